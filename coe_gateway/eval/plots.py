"""Cost-quality plots (matplotlib, Agg backend: no display needed).

Each plot shows policies' non-decreasing convex hulls (lines) over their raw sweep points
(dots), every single model (grey), the best single model (red, with its accuracy as a dashed
line), the cheapest model, the oracle (star) and random routing (cross).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coe_gateway.eval.metrics import hull_value

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from coe_gateway.eval.runner import CurveResult, SuiteResult

PER_K = 1000.0  # plot cost per 1,000 queries


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "plot"


def _dense(xs: np.ndarray, per_segment: int = 40) -> np.ndarray:
    """Hull x values with points inserted, so straight hull segments stay straight on a log
    axis."""
    if len(xs) < 2:
        return xs
    parts = [np.linspace(a, b, per_segment, endpoint=False) for a, b in itertools.pairwise(xs)]
    return np.concatenate([*parts, xs[-1:]])


def _baselines(ax: Axes, result: SuiteResult) -> None:
    ref = result.reference
    singles = [b for b in result.baselines if b.kind == "single"]
    ax.scatter([b.cost * PER_K for b in singles], [b.accuracy for b in singles], s=18,
               color="0.6", zorder=3, label="single models")
    if len(singles) <= 12:
        for b in singles:
            ax.annotate(b.name.split("/")[-1], (b.cost * PER_K, b.accuracy), fontsize=6,
                        color="0.4", xytext=(3, 2), textcoords="offset points")
    ax.scatter([ref.strong_cost * PER_K], [ref.strong_accuracy], s=60, marker="D",
               color="tab:red", zorder=4, label=f"best single: {ref.strong}")
    ax.axhline(ref.strong_accuracy, color="tab:red", linestyle="--", linewidth=0.8)
    ax.scatter([ref.weak_cost * PER_K], [ref.weak_accuracy], s=60, marker="s",
               color="tab:green", zorder=4, label=f"cheapest: {ref.weak}")
    for b in result.baselines:
        if b.kind in ("oracle", "random"):
            marker, color = ("*", "gold") if b.kind == "oracle" else ("X", "black")
            ax.scatter([b.cost * PER_K], [b.accuracy], s=120 if b.kind == "oracle" else 60,
                       marker=marker, color=color, edgecolor="black", linewidth=0.5,
                       zorder=5, label=b.name)


def plot_curves(result: SuiteResult, curves: Sequence[CurveResult], path: Path,
                title: str) -> Path:
    """One PNG with ``curves`` and every baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    try:
        for curve in curves:
            pts = np.array([[p.cost * PER_K, p.accuracy] for p in curve.points])
            hx = _dense(curve.hull[:, 0])
            (line,) = ax.plot(hx * PER_K, hull_value(curve.hull, hx), linewidth=1.6,
                              label=curve.label)
            ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.5, color=line.get_color())
        _baselines(ax, result)
        costs = [b.cost for b in result.baselines if b.cost > 0]
        if costs and max(costs) / min(costs) > 20:
            ax.set_xscale("log")
            plain = FuncFormatter(lambda v, _: f"{v:g}")
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
            ax.xaxis.set_minor_formatter(plain)
            ax.tick_params(axis="x", which="minor", labelsize=6)
        ax.set_xlabel("mean cost, USD per 1,000 queries")
        ax.set_ylabel("mean quality (accuracy)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def plot_suite(result: SuiteResult, out_dir: Path) -> list[Path]:
    """``cost_quality.png`` with every curve, and one ``cost_quality_<policy>.png`` per
    policy of the suite (all routers under that policy)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = result.suite.name
    paths = [plot_curves(result, result.curves, out_dir / "cost_quality.png",
                         f"{name}: cost vs quality")]
    for policy in dict.fromkeys(c.policy for c in result.curves):
        chosen = [c for c in result.curves if c.policy == policy]
        paths.append(plot_curves(result, chosen, out_dir / f"cost_quality_{slug(policy)}.png",
                                 f"{name}: {policy}"))
    return paths
