"""Plots of the image evaluation (matplotlib's Agg canvas, no pyplot state), in the style of
:mod:`coe_gateway.eval.plots`: Pareto frontiers (lines) over the raw sweep points (markers),
single models as grey dots, the best single model a red diamond with its accuracy dashed,
the oracle a gold star, random routing a black cross; cost per 1,000 queries, log scale."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from coe_gateway.eval import metrics
from coe_gateway.eval.plots import DPI, PALETTE, PER_K, X_LABEL

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Curve = Mapping[str, Sequence[float]]


def _figure(w: float, h: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _points(ax: Axes, points: Mapping[str, Mapping[str, float]]) -> None:
    singles = np.array([[p["cost"] * PER_K, p["accuracy"]] for k, p in points.items()
                        if k.startswith("model:")])
    ax.scatter(singles[:, 0], singles[:, 1], s=14, color="0.6", zorder=2, label="single models")
    best = points["best-single"]
    ax.scatter([best["cost"] * PER_K], [best["accuracy"]], marker="D", s=40, color="#d62728",
               zorder=6, label="best single (train)")
    ax.axhline(best["accuracy"], color="#d62728", linestyle="--", linewidth=0.8, alpha=0.6)
    oracle = points["oracle"]
    ax.scatter([oracle["cost"] * PER_K], [oracle["accuracy"]], marker="*", s=90,
               color="#b8860b", zorder=6, label=f"oracle ({oracle['accuracy']:.3f}, off axis)")
    ax.scatter([points["random"]["cost"] * PER_K], [points["random"]["accuracy"]], marker="x",
               s=40, color="black", zorder=6, label="random")


def _curve(ax: Axes, c: Curve, label: str, colour: str, style: Any = "-",
           width: float = 1.6) -> None:
    cost, acc = np.asarray(c["cost"]), np.asarray(c["accuracy"])
    ax.scatter(cost * PER_K, acc, s=7, color=colour, alpha=0.4, linewidths=0, zorder=3)
    front = metrics.pareto_frontier(cost, acc)
    if len(front):
        ax.step(front[:, 0] * PER_K, front[:, 1], where="post", color=colour,
                linestyle=style, linewidth=width, label=label, zorder=4)


def frontiers(panels: Mapping[str, Mapping[str, Curve]], refs: Mapping[str, Curve],
              points: Mapping[str, Mapping[str, float]], path: Path, title: str) -> Path:
    """One panel per router: its curves ({label: curve}; the first is drawn thick), the
    reference curves and points. Saved as a PNG at ``path``."""
    n = len(panels)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = _figure(5.0 * cols, 4.0 * rows + 0.6)
    styles = ["-", "--", ":", "-."]
    for i, (router, curves) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        for j, (label, c) in enumerate(curves.items()):
            _curve(ax, c, label, PALETTE[j % len(PALETTE)], width=2.4 if j == 0 else 1.4)
        for k, (label, c) in enumerate(refs.items()):
            _curve(ax, c, label, ["0.3", "#8c564b"][k % 2], styles[(k + 1) % 4], 1.0)
        _points(ax, points)
        top = max([max(c["accuracy"]) for c in [*curves.values(), *refs.values()]]
                  + [points["best-single"]["accuracy"]])
        low = min(p["accuracy"] for k, p in points.items() if k.startswith("model:"))
        ax.set_ylim(low - 0.02, top + 0.04)  # the oracle sits far above: named in the legend
        ax.set_xscale("log")
        ax.set_title(router, fontsize=10)
        ax.set_xlabel(X_LABEL, fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, loc="lower right", framealpha=0.85)
    fig.suptitle(title)
    fig.savefig(path)
    return path


def forest(rows: Sequence[tuple[str, float, float, float]], path: Path, title: str,
           xlabel: str) -> Path:
    """Estimates with 95% intervals, one line per (label, estimate, low, high)."""
    fig = _figure(8.5, 1.4 + 0.22 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    est = np.array([r[1] for r in rows])
    colours = ["#2ca02c" if r[2] > 0 else "#d62728" if r[3] < 0 else "#1f77b4" for r in rows]
    ax.hlines(y, [r[2] for r in rows], [r[3] for r in rows], colors=colours, linewidth=1.2)
    ax.scatter(est, y, c=colours, s=14, zorder=3)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.savefig(path)
    return path
