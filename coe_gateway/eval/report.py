"""Writing a suite's results: ``results.json``, ``report.md`` (the table) and the plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coe_gateway.eval.sweep import finite_or_none

if TYPE_CHECKING:
    from coe_gateway.eval.runner import CurveResult, SuiteResult

METRIC_NOTES = """\
- **AIQ** (RouterBench, Hu et al. 2024): mean height of the policy's non-decreasing convex
  hull over the cost range from the cheapest to the most expensive single model.
- **APGR** (RouteLLM, Ong et al. 2024): mean performance gap recovered,
  (q - q_weak) / (q_strong - q_weak), over x in [0, 1]; **CPT(p)**: the smallest x that
  recovers p of the gap. x: {axis}.
- **nAUC, Ps, QNC** (MMR-Bench, Ma et al. 2026): mean quality along the Pareto frontier
  between its cheapest and costliest point; its peak quality; the cost of its cheapest point
  that reaches the best single model's accuracy, as a fraction of that model's cost.
- **cost to match**: the cost at which the convex hull reaches the best single model's
  accuracy, as a fraction of that model's cost (mixing two operating points allowed).
- Costs: mean realised USD per query, shown per 1,000 queries. "-" = not reached / undefined.
"""


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _usd_k(x: float) -> str:
    return f"{x * 1000:.4g}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def curve_json(c: CurveResult) -> dict[str, Any]:
    return {
        "router": c.router, "policy": c.policy, "kind": c.kind, "sweep_param": c.sweep_param,
        "params": c.params, "operating_point": c.operating.to_json(),
        "points": [p.to_json() for p in c.points],
        "hull": [[float(x), float(y)] for x, y in c.hull], "metrics": c.metrics,
        "sweep_s": round(c.sweep_s, 4),
    }


def to_json(r: SuiteResult) -> dict[str, Any]:
    ref = r.reference
    return {
        "suite": r.suite.name, "description": r.suite.description, "suite_file": r.suite_path,
        "created": r.created, "data": r.data, "costs": r.costs,
        "reference": {
            "weak": ref.weak, "strong": ref.strong, "weak_accuracy": ref.weak_accuracy,
            "weak_cost": ref.weak_cost, "strong_accuracy": ref.strong_accuracy,
            "strong_cost": ref.strong_cost, "aiq_cost_range": list(ref.cost_range),
            "apgr_axis": ref.apgr_axis,
            "note": "weak = cheapest single model, strong = best single model",
        },
        "baselines": [{"name": b.name, "kind": b.kind, "accuracy": b.accuracy, "cost": b.cost}
                      for b in r.baselines],
        "curves": [curve_json(c) for c in r.curves],
        "timing": {k: finite_or_none(v) if isinstance(v, float) else v
                   for k, v in r.timing.items()},
    }


def baseline_table(r: SuiteResult) -> list[str]:
    ref = r.reference
    rows = ["| baseline | accuracy | USD / 1k queries | cost vs best single |",
            "| --- | ---: | ---: | ---: |"]
    order = sorted(r.baselines, key=lambda b: (b.kind != "oracle", b.kind != "random",
                                               -b.accuracy))
    for b in order:
        tag = " (best single)" if b.name == ref.strong and b.kind == "single" else (
            " (cheapest)" if b.name == ref.weak and b.kind == "single" else "")
        rel = b.cost / ref.strong_cost if ref.strong_cost > 0 else math.nan
        rows.append(f"| {b.name}{tag} | {b.accuracy:.3f} | {_usd_k(b.cost)} | {_num(rel, 2)} |")
    return rows


def curve_table(r: SuiteResult) -> list[str]:
    rows = ["| router / policy | accuracy @ params | USD / 1k | max accuracy | AIQ | APGR | "
            "CPT(50%) | CPT(80%) | nAUC | Ps | QNC | cost to match best |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in r.curves:
        m = c.metrics
        rows.append(
            f"| {c.label} | {c.operating.accuracy:.3f} | {_usd_k(c.operating.cost)} | "
            f"{_num(m['max_accuracy'])} | {_num(m['aiq'])} | {_num(m['apgr'])} | "
            f"{_pct(m['cpt50'])} | {_pct(m['cpt80'])} | {_num(m['nauc'])} | {_num(m['ps'])} | "
            f"{_num(m['qnc'], 2)} | {_num(m['match_cost_fraction'], 2)} |"
        )
    return rows


def price_table(r: SuiteResult) -> list[str]:
    rows = ["| model | input USD/1M | output USD/1M | mean output tokens (train) | price source |",
            "| --- | ---: | ---: | ---: | --- |"]
    for m, v in r.costs["per_model"].items():
        rows.append(f"| {m} | {v['input_per_mtok']:g} | {v['output_per_mtok']:g} | "
                    f"{v['mean_output_tokens']:g} | {v['source']} |")
    return rows


def to_markdown(r: SuiteResult, plots: list[Path] | None = None) -> str:
    ref, d = r.reference, r.data
    lines = [f"# Evaluation: {r.suite.name}", ""]
    if r.suite.description:
        lines += [r.suite.description.strip(), ""]
    lines += [
        f"- Data: {d['records']} records ({d['train']} train / {d['test']} test, "
        f"{d['split']}), {len(d['models'])} models.",
        f"- Source and licence: {d['attribution'].strip() or 'not stated in the suite'}",
        f"- Cost model: `{r.costs['model']}` ({r.costs['chars_per_token']:g} chars a token"
        + (f", {r.costs['image_tokens']} tokens an image" if r.costs["image_tokens"] else "")
        + "); prices below.",
        f"- Weak = cheapest single model: **{ref.weak}** ({ref.weak_accuracy:.3f}); "
        f"strong = best single model: **{ref.strong}** ({ref.strong_accuracy:.3f}, "
        f"{_usd_k(ref.strong_cost)} USD / 1k queries).",
        f"- AIQ cost range: {_usd_k(ref.cost_range[0])} .. {_usd_k(ref.cost_range[1])} USD / 1k.",
        "", "## Policies", "", *curve_table(r), "", "## Baselines", "", *baseline_table(r), "",
    ]
    for p in plots or []:
        lines += [f"![{p.stem}]({p.name})", ""]
    lines += ["## Metrics", "", METRIC_NOTES.format(axis=ref.apgr_axis), "## Prices", "",
              *price_table(r), ""]
    return "\n".join(lines)


def write_outputs(r: SuiteResult, out_dir: Path) -> list[Path]:
    """results.json, report.md and the PNG plots under ``out_dir``."""
    from coe_gateway.eval.plots import plot_suite

    out_dir.mkdir(parents=True, exist_ok=True)
    plots = plot_suite(r, out_dir)
    text = json.dumps(to_json(r), indent=1, allow_nan=False)
    (out_dir / "results.json").write_text(text + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(to_markdown(r, plots), encoding="utf-8")
    return [out_dir / "results.json", out_dir / "report.md", *plots]


def summary_table(results: list[dict[str, Any]]) -> str:
    """One Markdown table over several suites' ``results.json``: per curve, beside the best
    single model and the oracle."""
    rows = ["| suite | test queries | models | best single: accuracy @ USD/1k | oracle | "
            "router / policy | AIQ | APGR | QNC | cost to match best |",
            "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        ref = r["reference"]
        oracle = next(b["accuracy"] for b in r["baselines"] if b["kind"] == "oracle")
        head = (f"| {r['suite']} | {r['data']['test']} | {len(r['data']['models'])} | "
                f"{ref['strong']}: {ref['strong_accuracy']:.3f} @ "
                f"{_usd_k(ref['strong_cost'])} | {oracle:.3f} |")
        for i, c in enumerate(r["curves"]):
            m = c["metrics"]
            lead = head if i == 0 else "| | | | | |"
            rows.append(f"{lead} {c['router']} / {c['policy']} | {_num(m['aiq'])} | "
                        f"{_num(m['apgr'])} | {_num(m['qnc'], 2)} | "
                        f"{_num(m['match_cost_fraction'], 2)} |")
    return "\n".join(rows)
