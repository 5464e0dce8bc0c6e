"""The report of ``coe-gateway bench compare``: every figure of one run, what is derived from
them (each target's latency added over direct, the gateway-versus-LiteLLM ratios, the notes
on what limited the measurement), as plain JSON and as rich tables."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from coe_gateway.bench.processes import CorePlan
from coe_gateway.bench.settings import CompareSettings
from coe_gateway.bench.steps import LatencyFigures, RateFigures, StreamFigures, TargetFigures

# -- the figures of one run ----------------------------------------------------------------


@dataclass
class CompareReport:
    """All figures of one run, plus what the reader needs to judge them."""

    settings: dict[str, Any]
    meta: dict[str, Any]
    targets: list[TargetFigures]

    def target(self, key: str) -> TargetFigures | None:
        return next((t for t in self.targets if t.key == key and t.error is None), None)

    def to_json(self) -> dict[str, Any]:
        """Everything as plain JSON (NaN written as null)."""
        out: dict[str, Any] = json_ready({"settings": self.settings, "meta": self.meta,
                                      "targets": [asdict(t) for t in self.targets],
                                      "added": added_figures(self), "ratios": ratios(self)})
        return out


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON: NaN and infinities as None, paths as strings, tuples as lists."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# -- derived figures: added latency, ratios, limitations -------------------------------------


def _added_stream(t: StreamFigures, direct: StreamFigures, prefix: str,
                  with_p50: bool = True) -> dict[str, float]:
    """A streaming step's added TTFT (ms) and per-chunk gap (ms and us), keys ``prefix``-ed."""
    out: dict[str, float] = {}
    if with_p50:
        out[f"{prefix}ttft_p50_ms"] = t.ttft_p50_ms - direct.ttft_p50_ms
    out[f"{prefix}ttft_p99_ms"] = t.ttft_p99_ms - direct.ttft_p99_ms
    per_chunk = t.mean_gap_ms - direct.mean_gap_ms
    out[f"{prefix}per_chunk_ms"] = per_chunk
    out[f"{prefix}per_chunk_us"] = per_chunk * 1e3
    return out


def added_figures(report: CompareReport) -> dict[str, dict[str, Any]]:
    """Per target: each latency figure minus the same figure direct (ms; ``_us``: the same
    in microseconds). ``sequential_ttft_*`` and ``sequential_per_chunk_*``: streams one at a
    time; ``ttft_p99_ms`` and ``per_chunk_*``: the burst of streams at once."""
    direct = report.target("direct")
    out: dict[str, dict[str, Any]] = {}
    if direct is None:
        return out
    for t in report.targets:
        if t.error is not None or t.key == "direct":
            continue
        row: dict[str, Any] = {}
        if t.sequential and direct.sequential:
            row["sequential_p50_ms"] = t.sequential.p50_ms - direct.sequential.p50_ms
            row["sequential_p99_ms"] = t.sequential.p99_ms - direct.sequential.p99_ms
        if t.sequential_streaming and direct.sequential_streaming:
            row.update(_added_stream(t.sequential_streaming, direct.sequential_streaming,
                                     "sequential_"))
        if t.streaming and direct.streaming:
            row.update(_added_stream(t.streaming, direct.streaming, "", with_p50=False))
        row["sweep"] = {}
        for r in t.sweep:
            d = direct.rate(r.rate)
            if r.skipped is None and d is not None and d.skipped is None:
                row["sweep"][f"{r.rate:g}"] = {"p50_ms": r.p50_ms - d.p50_ms,
                                               "p99_ms": r.p99_ms - d.p99_ms}
        out[t.key] = row
    return out


def _ratio(num: float, den: float, floor: float = 1e-9) -> float:
    if math.isnan(num) or math.isnan(den) or den <= floor:
        return float("nan")
    return num / den


def ratios(report: CompareReport) -> dict[str, float]:
    """Gateway versus LiteLLM: throughput (higher is better for the gateway when > 1) and
    LiteLLM's added latency, CPU and memory over the gateway's (> 1: the gateway adds less)."""
    gw, ll = report.target("gateway"), report.target("litellm")
    if gw is None or ll is None:
        return {}
    added = added_figures(report)
    ga, la = added.get("gateway", {}), added.get("litellm", {})
    out: dict[str, float] = {}
    if gw.throughput and ll.throughput:
        out["throughput_gateway_over_litellm"] = _ratio(gw.throughput.rps, ll.throughput.rps)
        out["cpu_per_request_litellm_over_gateway"] = _ratio(
            ll.throughput.cpu_ms_per_request, gw.throughput.cpu_ms_per_request)
    nan = float("nan")
    for name in ("sequential_p50_ms", "sequential_p99_ms", "sequential_ttft_p50_ms",
                 "sequential_ttft_p99_ms", "sequential_per_chunk_ms", "ttft_p99_ms",
                 "per_chunk_ms"):
        out[f"added_{name.removesuffix('_ms')}_litellm_over_gateway"] = _ratio(
            la.get(name, nan), ga.get(name, nan), floor=0.01)
    for rate, g in ga.get("sweep", {}).items():
        lr = la.get("sweep", {}).get(rate)
        if lr is not None:
            out[f"added_p99_at_{rate}_litellm_over_gateway"] = _ratio(lr["p99_ms"], g["p99_ms"],
                                                                       floor=0.01)
    if gw.streaming and ll.streaming:
        out["cpu_per_stream_litellm_over_gateway"] = _ratio(ll.streaming.cpu_ms_per_stream,
                                                            gw.streaming.cpu_ms_per_stream)
    out["rss_litellm_over_gateway"] = _ratio(ll.rss_mb, gw.rss_mb)
    return out


def limitations(report: CompareReport, plan: CorePlan) -> list[str]:
    """What limited the measurement: shared cores, other load, the generator's ceiling."""
    notes: list[str] = []
    if plan.shared:
        shared = sorted(set(plan.server) & set(plan.harness))
        notes.append(f"the server and the harness share core(s) {shared}")
    load = report.meta.get("load_average_before", 0.0)
    if load > 0.5:
        notes.append(f"the machine was not idle before the run (load average {load:.2f})")
    direct = report.target("direct")
    if direct is None or direct.throughput is None:
        return notes
    ceiling = direct.throughput.rps
    notes.append(f"generator + upstream ceiling (direct, {direct.throughput.concurrency} "
                 f"connections, sharing core(s) {list(plan.harness)}): {ceiling:,.0f} req/s")
    for t in report.targets:
        if t.error is not None:
            continue
        if t.key != "direct" and t.throughput and t.throughput.rps > 0.8 * ceiling:
            notes.append(f"{t.label} throughput is within 80% of that ceiling: it may be "
                         "limited by the generator, not the server")
        for r in t.sweep:
            if r.skipped is None and (r.achieved_rps < 0.95 * r.rate or r.lag_p99_ms > 5.0):
                notes.append(f"{t.label} @ {r.rate:g}/s: the generator sent {r.achieved_rps:,.0f}"
                             f"/s, send lag p99 {r.lag_p99_ms:.1f} ms")
    return notes


# -- rendering --------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    """A figure for a table cell: ``—`` for a missing one."""
    if value is None or math.isnan(value):
        return "—"
    return f"{value:,.{digits}f}"


Row = tuple[str, Callable[[TargetFigures], str]]


def _table(title: str, report: CompareReport, rows: Sequence[Row | None],
           caption: str | None = None) -> Any:
    """A rich table: one column per target, one row per figure (None = a section break)."""
    from rich.table import Table

    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    table.add_column("")
    for t in report.targets:
        table.add_column(t.label, justify="right")
    for row in rows:
        if row is None:
            table.add_section()
            continue
        name, cell = row
        table.add_row(name, *("FAILED" if t.error else cell(t) for t in report.targets))
    return table


def _added(report: CompareReport, t: TargetFigures, *path: str) -> str:
    value: Any = added_figures(report).get(t.key, {})
    for part in path:
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return fmt(value) if isinstance(value, float) else "—"


def _sequential_rows(report: CompareReport) -> list[Row | None]:
    def seq(fn: Callable[[LatencyFigures], str]) -> Callable[[TargetFigures], str]:
        return lambda t: fn(t.sequential) if t.sequential else "—"

    return [
        ("requests (errors)", seq(lambda f: f"{f.requests:,} ({f.errors})")),
        ("p50 ms", seq(lambda f: fmt(f.p50_ms, 3))),
        ("p99 ms", seq(lambda f: fmt(f.p99_ms, 3))),
        ("added p50 ms", lambda t: _added(report, t, "sequential_p50_ms")),
        ("added p99 ms", lambda t: _added(report, t, "sequential_p99_ms")),
    ]


def _throughput_rows() -> list[Row | None]:
    def thr(fn: Callable[[LatencyFigures], str]) -> Callable[[TargetFigures], str]:
        return lambda t: fn(t.throughput) if t.throughput else "—"

    return [
        ("req/s", thr(lambda f: fmt(f.rps, 0))),
        ("errors", thr(lambda f: str(f.errors))),
        ("p50 ms", thr(lambda f: fmt(f.p50_ms))),
        ("p99 ms", thr(lambda f: fmt(f.p99_ms))),
        ("server CPU ms/request", thr(lambda f: fmt(f.cpu_ms_per_request, 3))),
        ("server CPU busy (cores)", thr(lambda f: fmt(f.cpu_s / f.seconds))),
    ]


def _sweep_rows(report: CompareReport, rates: Sequence[float]) -> list[Row | None]:
    rows: list[Row | None] = []
    for rate in rates:
        key = f"{rate:g}"

        def cell(fn: Callable[[RateFigures], str], rate: float = rate,
                 ) -> Callable[[TargetFigures], str]:
            def get(t: TargetFigures) -> str:
                r = t.rate(rate)
                if r is None:
                    return "—"
                return fn(r) if r.skipped is None else "skipped"
            return get

        if rows:
            rows.append(None)
        rows += [
            (f"{key}/s: sent/s (gen lag p99 ms)",
             cell(lambda r: f"{r.achieved_rps:,.0f} ({fmt(r.lag_p99_ms, 1)})")),
            (f"{key}/s: p50 / p99 ms", cell(lambda r: f"{fmt(r.p50_ms)} / {fmt(r.p99_ms)}")),
            (f"{key}/s: added p50 ms", functools.partial(_added_at, report, key, "p50_ms")),
            (f"{key}/s: added p99 ms", functools.partial(_added_at, report, key, "p99_ms")),
            (f"{key}/s: errors", cell(lambda r: _errors(r.errors, r.error_kinds))),
        ]
    return rows


def _added_at(report: CompareReport, rate: str, figure: str, t: TargetFigures) -> str:
    return _added(report, t, "sweep", rate, figure)


def _errors(n: int, kinds: dict[str, int]) -> str:
    if not n:
        return "0"
    top = max(kinds.items(), key=lambda kv: kv[1])[0] if kinds else "?"
    return f"{n:,} ({top})"


def _stream_rows(report: CompareReport, s: CompareSettings) -> list[Row | None]:
    def one(fn: Callable[[StreamFigures], str]) -> Callable[[TargetFigures], str]:
        return lambda t: fn(t.sequential_streaming) if t.sequential_streaming else "—"

    def st(fn: Callable[[StreamFigures], str]) -> Callable[[TargetFigures], str]:
        return lambda t: fn(t.streaming) if t.streaming else "—"

    def us(t: TargetFigures, key: str) -> str:
        value = added_figures(report).get(t.key, {}).get(key)
        return fmt(value, 1) if isinstance(value, float) else "—"

    single, burst = "one stream at a time", f"{s.streams} at once"
    stall = s.stall_threshold_s * 1e3
    return [
        (f"streams (errors), {single}",
         one(lambda f: f"{f.streams:,} ({_errors(f.streams - f.ok, f.error_kinds)})")),
        (f"TTFT p50 ms, {single}", one(lambda f: fmt(f.ttft_p50_ms))),
        (f"TTFT p99 ms, {single}", one(lambda f: fmt(f.ttft_p99_ms))),
        (f"added TTFT p50 ms, {single}", lambda t: _added(report, t, "sequential_ttft_p50_ms")),
        (f"added TTFT p99 ms, {single}", lambda t: _added(report, t, "sequential_ttft_p99_ms")),
        (f"mean inter-chunk gap ms, {single}", one(lambda f: fmt(f.mean_gap_ms, 3))),
        (f"added per-chunk us, {single}", lambda t: us(t, "sequential_per_chunk_us")),
        None,
        (f"finished with [DONE], {burst}", st(lambda f: f"{f.completed}/{f.streams}")),
        (f"stall-free (no gap > {stall:g} ms), {burst}",
         st(lambda f: f"{f.stall_free}/{f.streams}")),
        (f"TTFT p50 ms, {burst}", st(lambda f: fmt(f.ttft_p50_ms))),
        (f"TTFT p99 ms, {burst}", st(lambda f: fmt(f.ttft_p99_ms))),
        (f"added TTFT p99 ms, {burst}", lambda t: _added(report, t, "ttft_p99_ms")),
        (f"mean inter-chunk gap ms, {burst}", st(lambda f: fmt(f.mean_gap_ms, 3))),
        (f"added per-chunk us, {burst}", lambda t: us(t, "per_chunk_us")),
        ("gap p99 / max ms", st(lambda f: f"{fmt(f.gap_p99_ms, 1)} / {fmt(f.max_gap_ms, 1)}")),
        ("SSE events per stream", st(lambda f: fmt(f.events_per_stream, 1))),
        ("burst wall s", st(lambda f: fmt(f.seconds))),
        ("errors", st(lambda f: _errors(f.streams - f.ok, f.error_kinds))),
    ]


def _resource_rows() -> list[Row | None]:
    return [
        ("CPU ms/request (throughput step)",
         lambda t: fmt(t.throughput.cpu_ms_per_request, 3) if t.throughput else "—"),
        ("CPU ms/stream (streams one at a time)",
         lambda t: fmt(t.sequential_streaming.cpu_ms_per_stream, 2)
         if t.sequential_streaming else "—"),
        ("CPU ms/stream (burst of streams at once)",
         lambda t: fmt(t.streaming.cpu_ms_per_stream, 2) if t.streaming else "—"),
        ("RSS MB after the load", lambda t: fmt(t.rss_mb, 0)),
    ]


RATIO_LABELS = {
    "throughput_gateway_over_litellm": "throughput (c={c}): gateway ÷ litellm",
    "added_sequential_p50_litellm_over_gateway": "added p50, sequential: litellm ÷ gateway",
    "added_sequential_p99_litellm_over_gateway": "added p99, sequential: litellm ÷ gateway",
    "added_sequential_ttft_p50_litellm_over_gateway":
        "added TTFT p50, one stream at a time: litellm ÷ gateway",
    "added_sequential_ttft_p99_litellm_over_gateway":
        "added TTFT p99, one stream at a time: litellm ÷ gateway",
    "added_sequential_per_chunk_litellm_over_gateway":
        "added per-chunk, one stream at a time: litellm ÷ gateway",
    "added_ttft_p99_litellm_over_gateway": "added TTFT p99, {n} streams at once: litellm ÷ gateway",
    "added_per_chunk_litellm_over_gateway":
        "added per-chunk, {n} streams at once: litellm ÷ gateway",
    "cpu_per_request_litellm_over_gateway": "CPU per request: litellm ÷ gateway",
    "cpu_per_stream_litellm_over_gateway": "CPU per stream, {n} at once: litellm ÷ gateway",
    "rss_litellm_over_gateway": "RSS: litellm ÷ gateway",
}


def _ratio_table(report: CompareReport) -> Any:
    from rich.table import Table

    table = Table(title="Ratios (gateway vs litellm; > 1 favours the gateway)",
                  title_justify="left", caption="— : undefined (a side missing, or the "
                  "gateway's added figure ≤ 0.01 ms)", caption_justify="left")
    table.add_column("")
    table.add_column("×", justify="right")
    c, n = report.settings.get("concurrency", 16), report.settings.get("streams", 128)
    for key, value in ratios(report).items():
        label = RATIO_LABELS.get(key)
        if label is None and key.startswith("added_p99_at_"):
            rate = key.removeprefix("added_p99_at_").split("_")[0]
            label = f"added p99 @ {rate}/s open loop: litellm ÷ gateway"
        table.add_row((label or key).format(c=c, n=n), fmt(value, 1))
    return table


def render(report: CompareReport, s: CompareSettings, console: Any) -> None:
    """Print every table, the ratios and the notes to a rich ``console``."""
    console.print(_table(
        "1. Sequential latency, 1 request in flight, non-streaming (ms)", report,
        _sequential_rows(report), caption="added = target minus direct, same percentile"))
    console.print(_table(f"2. Throughput, {s.concurrency} connections, closed loop", report,
                         _throughput_rows()))
    console.print(_table(
        f"3. Streaming: {s.chunks} chunks a stream, one every {s.chunk_interval_s * 1e3:g} ms "
        f"upstream; one stream at a time for {s.seconds:g}s, then {s.streams} at once", report,
        _stream_rows(report, s),
        caption="one stream at a time: closed loop, 1 in flight (few streams: p99 ≈ max); "
                f"{s.streams} at once: one burst of stream set-ups queued on the server's "
                "core(s)\nadded per-chunk us = mean gap between SSE events minus direct's, "
                "in microseconds"))
    console.print(_table(
        f"4. Open-loop sweep, {s.seconds:g}s per rate (timeout {s.timeout_s:g}s)", report,
        _sweep_rows(report, sorted(s.rates)),
        caption="direct p50/p99 are the baselines; latency counts successes only"))
    console.print(_table("5. Server process: CPU and memory", report, _resource_rows(),
                         caption="CPU = utime+stime of the process tree (/proc/<pid>/stat); "
                                 "direct = the fake upstream"))
    if ratios(report):
        console.print(_ratio_table(report))
    for t in report.targets:
        status = f"FAILED: {t.error}" if t.error else t.description
        console.print(f"[bold]{t.label}[/bold]: {status}")
    version = report.meta.get("litellm_version")
    if version:
        console.print(f"LiteLLM version: {version}")
    for note in report.meta.get("notes", []):
        console.print(f"note: {note}")
    console.print(f"wall time {report.meta.get('wall_seconds', 0):.0f}s")
