"""The measurement steps of ``coe-gateway bench compare`` on one target and the figures each
one yields.

In order, after a sanity check and a warm-up: (1) sequential latency at one request in flight,
(2) closed-loop throughput at ``concurrency`` connections, (3a) streams one at a time (closed
loop, one in flight, for ``seconds``: the time to first token and per-chunk cost of a stream
with nothing queued beside it), (3b) a burst of ``streams`` streams sent at once (how the
server copes with that many stream set-ups queued on its core), and (4) an open-loop rate
sweep (last: it may overload). The server's CPU time is read around the throughput and
streaming steps, its RSS after the load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from coe_gateway.bench import loadgen
from coe_gateway.bench.processes import cpu_seconds, rss_mb, wait_quiet
from coe_gateway.bench.settings import HOST, CompareSettings, Say
from coe_gateway.bench.targets import Target, chat_source

T = TypeVar("T")

# -- figures ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0..100); NaN for no values."""
    if not values:
        return float("nan")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclass(frozen=True)
class LatencyFigures:
    """A closed-loop step: requests, errors, req/s, latency (ms)."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    error_kinds: dict[str, int]
    cpu_s: float = float("nan")

    @classmethod
    def of(cls, result: loadgen.LoadResult, concurrency: int,
           cpu_s: float = float("nan")) -> LatencyFigures:
        lat = [e.latency * 1e3 for e in result.ok]
        return cls(concurrency, len(lat), result.errors, result.seconds,
                   len(lat) / result.seconds, percentile(lat, 50), percentile(lat, 99),
                   sum(lat) / len(lat) if lat else float("nan"), result.error_kinds(), cpu_s)

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_s * 1e3 / self.requests if self.requests else float("nan")


@dataclass(frozen=True)
class RateFigures:
    """One open-loop rate: what was offered, achieved, and the latency of the successes."""

    rate: float
    scheduled: int = 0
    ok: int = 0
    errors: int = 0
    achieved_rps: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    lag_p99_ms: float = float("nan")
    error_kinds: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None

    @classmethod
    def of(cls, rate: float, result: loadgen.LoadResult) -> RateFigures:
        lat = [e.latency * 1e3 for e in result.ok]
        return cls(rate, result.scheduled, len(lat), result.errors,
                   result.scheduled / result.seconds, percentile(lat, 50), percentile(lat, 99),
                   percentile(result.lags, 99) * 1e3, result.error_kinds())

    @property
    def saturated(self) -> bool:
        """Over a tenth failed, or under half the offered rate came back."""
        return self.errors > 0.1 * max(self.scheduled, 1) or self.ok < 0.5 * self.scheduled


@dataclass(frozen=True)
class StreamFigures:
    """A streaming step: a burst of concurrent streams, or streams one at a time."""

    streams: int
    ok: int
    completed: int
    stall_free: int
    ttft_p50_ms: float
    ttft_p99_ms: float
    mean_gap_ms: float
    gap_p99_ms: float
    max_gap_ms: float
    events_per_stream: float
    seconds: float
    cpu_s: float
    error_kinds: dict[str, int]

    @classmethod
    def of(cls, result: loadgen.LoadResult, stall_s: float, cpu_s: float) -> StreamFigures:
        ok = [e for e in result.ok if e.events > 1]
        done = [e for e in ok if e.saw_done]
        ttft = [(e.first_event_at - e.sent_at) * 1e3 for e in ok]
        mean_gaps = [(e.last_event_at - e.first_event_at) * 1e3 / (e.events - 1) for e in ok]
        gaps = [g * 1e3 for e in ok for g in e.gaps or ()]
        return cls(len(result.exchanges), len(ok), len(done),
                   sum(1 for e in done if e.max_gap <= stall_s),
                   percentile(ttft, 50), percentile(ttft, 99),
                   sum(mean_gaps) / len(mean_gaps) if mean_gaps else float("nan"),
                   percentile(gaps, 99), max(gaps, default=float("nan")),
                   sum(e.events for e in ok) / len(ok) if ok else float("nan"),
                   result.seconds, cpu_s, result.error_kinds())

    @property
    def cpu_ms_per_stream(self) -> float:
        return self.cpu_s * 1e3 / self.ok if self.ok else float("nan")


@dataclass(frozen=True)
class TargetFigures:
    """Everything measured on one target (None where the step did not run).

    ``sequential_streaming``: streams one at a time; ``streaming``: the burst of streams sent
    at once."""

    key: str
    label: str
    description: str = ""
    sequential: LatencyFigures | None = None
    throughput: LatencyFigures | None = None
    sequential_streaming: StreamFigures | None = None
    streaming: StreamFigures | None = None
    sweep: list[RateFigures] = field(default_factory=list)
    rss_mb: float = float("nan")
    error: str | None = None

    def rate(self, rate: float) -> RateFigures | None:
        return next((r for r in self.sweep if r.rate == rate), None)


# -- the steps --------------------------------------------------------------------------------


async def _with_cpu(pid: int, step: Awaitable[T]) -> tuple[T, float]:
    """What ``step`` returns, and the CPU seconds ``pid``'s process tree used meanwhile."""
    cpu0 = cpu_seconds(pid)
    result = await step
    return result, cpu_seconds(pid) - cpu0


async def sanity_check(target: Target) -> None:
    """One plain and one streaming request must succeed (RuntimeError naming what failed)."""
    plain = await loadgen.request_once(HOST, target.port, chat_source(
        target, stream=False, max_tokens=4)())
    if not plain.ok or b'"choices"' not in plain.body_bytes:
        raise RuntimeError(f"{target.label}: a plain request failed: status {plain.status} "
                           f"{plain.error or ''} {plain.body_bytes[:300]!r}")
    stream = await loadgen.request_once(HOST, target.port, chat_source(
        target, stream=True, max_tokens=3)(), stream=True)
    if not stream.ok or not stream.saw_done:
        raise RuntimeError(f"{target.label}: a streaming request failed: status "
                           f"{stream.status} {stream.error or ''} {stream.body_bytes[:300]!r}")


async def warm_up(target: Target, s: CompareSettings, plain: loadgen.RequestSource,
                  streamed: loadgen.RequestSource) -> None:
    """``warmup_s`` of closed-loop load and a few streams, then until the server is quiet."""
    await loadgen.closed_loop(HOST, target.port, plain, s.concurrency, s.warmup_s, s.timeout_s)
    await loadgen.stream_burst(HOST, target.port, streamed, min(8, s.streams), 60.0)
    await wait_quiet(target.pid)


async def sequential_step(target: Target, s: CompareSettings, plain: loadgen.RequestSource,
                          say: Say) -> LatencyFigures:
    """One request in flight for ``seconds``."""
    say(f"  {target.label}: sequential, {s.seconds:g}s at 1 in flight")
    return LatencyFigures.of(await loadgen.closed_loop(
        HOST, target.port, plain, 1, s.seconds, s.timeout_s), 1)


async def throughput_step(target: Target, s: CompareSettings, plain: loadgen.RequestSource,
                          say: Say) -> LatencyFigures:
    """``concurrency`` connections back to back for ``seconds``, with the server's CPU."""
    say(f"  {target.label}: throughput, {s.seconds:g}s at {s.concurrency} connections")
    result, cpu_s = await _with_cpu(target.pid, loadgen.closed_loop(
        HOST, target.port, plain, s.concurrency, s.seconds, s.timeout_s))
    figures = LatencyFigures.of(result, s.concurrency, cpu_s)
    await wait_quiet(target.pid)
    return figures


async def stream_sequence_step(target: Target, s: CompareSettings,
                               streamed: loadgen.RequestSource, say: Say) -> StreamFigures:
    """Streams of ``chunks`` chunks one at a time (closed loop, one in flight) for
    ``seconds``, with the server's CPU."""
    say(f"  {target.label}: streams one at a time, {s.seconds:g}s x {s.chunks} chunks")
    result, cpu_s = await _with_cpu(target.pid, loadgen.closed_loop(
        HOST, target.port, streamed, 1, s.seconds, s.stream_timeout_s, stream=True))
    figures = StreamFigures.of(result, s.stall_threshold_s, cpu_s)
    await wait_quiet(target.pid)
    return figures


async def stream_burst_step(target: Target, s: CompareSettings,
                            streamed: loadgen.RequestSource, say: Say) -> StreamFigures:
    """``streams`` streams of ``chunks`` chunks sent at the same instant, with the server's
    CPU."""
    say(f"  {target.label}: {s.streams} streams x {s.chunks} chunks")
    burst, cpu_s = await _with_cpu(target.pid, loadgen.stream_burst(
        HOST, target.port, streamed, s.streams, timeout_s=s.stream_timeout_s))
    figures = StreamFigures.of(burst, s.stall_threshold_s, cpu_s)
    await wait_quiet(target.pid)
    return figures


async def rate_sweep(target: Target, s: CompareSettings, source: loadgen.RequestSource,
                     say: Say) -> list[RateFigures]:
    """Each rate for ``seconds`` (ascending); after a saturated rate the higher ones are
    skipped when ``stop_on_saturation``."""
    out: list[RateFigures] = []
    saturated_at: float | None = None
    for rate in sorted(s.rates):
        if saturated_at is not None:
            out.append(RateFigures(rate, skipped=f"saturated at {saturated_at:g}/s"))
            continue
        say(f"  {target.label}: open loop {rate:g} req/s for {s.seconds:g}s")
        result = await loadgen.open_loop(HOST, target.port, source, rate, s.seconds,
                                         s.timeout_s)
        figures = RateFigures.of(rate, result)
        out.append(figures)
        await wait_quiet(target.pid)
        if figures.saturated and s.stop_on_saturation:
            saturated_at = rate
    return out


async def measure_target(target: Target, s: CompareSettings, say: Say) -> TargetFigures:
    """Sanity check, warm-up, then every step in order (the sweep last: it may overload)."""
    await sanity_check(target)
    plain = chat_source(target, stream=False, max_tokens=s.max_tokens)
    streamed = chat_source(target, stream=True, max_tokens=s.chunks)
    await warm_up(target, s, plain, streamed)
    sequential = await sequential_step(target, s, plain, say)
    throughput = await throughput_step(target, s, plain, say)
    one_at_a_time = await stream_sequence_step(target, s, streamed, say)
    burst = await stream_burst_step(target, s, streamed, say)
    sweep = await rate_sweep(target, s, plain, say)
    return TargetFigures(target.key, target.label, target.description, sequential=sequential,
                         throughput=throughput, sequential_streaming=one_at_a_time,
                         streaming=burst, sweep=sweep, rss_mb=rss_mb(target.pid))


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh uvloop loop (asyncio's when uvloop is missing)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
