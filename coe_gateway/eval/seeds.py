"""A suite over several split seeds: how much each curve's headline figures move with the
split (``coe-gateway eval seeds``).

For every seed the records are split afresh, every router is trained on that seed's
training split and every policy and strategy is swept on its test split; nothing is tuned
on a test split. The result is, per curve, the peak accuracy and the cost to match the best
single model (a fraction of its cost) for each seed, with their mean and spread, beside the
best single model of each split.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import Progress

from coe_gateway.eval.predictions import PredictionStore
from coe_gateway.eval.runner import evaluate, prepare
from coe_gateway.eval.suite import load_suite


@dataclass
class SeedFigures:
    """Per curve label, per seed: (peak accuracy, cost to match the best single model)."""

    seeds: list[int]
    best_single: dict[int, tuple[str, float]] = field(default_factory=dict)
    curves: dict[str, dict[int, tuple[float | None, float | None]]] = field(default_factory=dict)


def run_seeds(path: str | Path, seeds: Sequence[int], routers: Sequence[str] | None = None,
              cache_dir: str | Path | None = None,
              progress: Progress | None = None) -> SeedFigures:
    """Evaluate the suite once per split seed (only ``routers`` when given)."""
    suite = load_suite(path)
    if routers:
        keep = [r for r in suite.routers if r.name in routers]
        strategies = [s.model_copy(update={"routers": [r for r in (s.routers or routers)
                                                       if r in routers]})
                      for s in suite.strategies]
        suite = suite.model_copy(update={"routers": keep, "strategies": strategies})
    out = SeedFigures(list(seeds))
    for seed in seeds:
        seeded = suite.model_copy(update={"split": suite.split.model_copy(update={"seed": seed})})
        p = prepare(seeded, str(path))
        store = PredictionStore(Path(cache_dir) / suite.name if cache_dir else None)
        result = evaluate(p, store=store, progress=progress)
        ref = result.reference
        out.best_single[seed] = (ref.strong, ref.strong_accuracy)
        for c in result.curves:
            out.curves.setdefault(c.label, {})[seed] = (
                c.metrics.get("max_accuracy"), c.metrics.get("match_cost_fraction"))
    return out


def _stat(values: list[float | None], fmt: str) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "-"
    if len(got) == 1:
        return format(got[0], fmt)
    miss = f" ({len(values) - len(got)} never)" if len(got) < len(values) else ""
    return f"{statistics.mean(got):{fmt}} ± {statistics.stdev(got):{fmt}}{miss}"


def to_markdown(fig: SeedFigures) -> str:
    """One table: each curve's peak accuracy and cost to match, per seed and mean ± sd."""
    seeds = fig.seeds
    head = ["curve"] + [f"peak s{s}" for s in seeds] + ["peak mean ± sd"] + \
        [f"match s{s}" for s in seeds] + ["match mean ± sd"]
    lines = ["| " + " | ".join(head) + " |", "| --- " + "| ---: " * (len(head) - 1) + "|"]
    best = ["best single"] + [f"{fig.best_single[s][1]:.3f}" for s in seeds] + [
        _stat([fig.best_single[s][1] for s in seeds], ".3f")] + ["1.00"] * len(seeds) + ["1.00"]
    lines.append("| " + " | ".join(best) + " |")
    for label, per in fig.curves.items():
        peaks = [per.get(s, (None, None))[0] for s in seeds]
        match = [per.get(s, (None, None))[1] for s in seeds]
        row = [label] + ["-" if v is None else f"{v:.3f}" for v in peaks] + \
            [_stat(peaks, ".3f")] + ["-" if v is None else f"{v:.2f}" for v in match] + \
            [_stat(match, ".2f")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
