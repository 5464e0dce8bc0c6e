"""Cost-quality plots (matplotlib's Agg canvas: no display, no pyplot state).

Each plot shows the curves' non-decreasing convex hulls (lines) over their raw sweep points
(small markers), every single model (small grey dots), the best single model (red diamond,
with its accuracy as a dashed line), the cheapest model (green square), the oracle (gold
star) and random routing (black cross). A router has one colour in every plot of a report
(:func:`router_colours`), a policy one line style and marker (:func:`policy_styles`). The
legend sits to the right of the axes (the figure widens for it, in columns when it is tall)
and the best few curves (:func:`best_curves`) are named at their best point.
"""

from __future__ import annotations

import colorsys
import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from coe_gateway.eval.metrics import hull_value

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

    from coe_gateway.eval.runner import CurveResult, SuiteResult

PER_K = 1000.0  # plot cost per 1,000 queries
X_LABEL = "mean cost, USD per 1,000 queries"
LOG_X_SPAN = 20.0  # log-scale cost axis when the single models' costs span more than this
AXES_W, FIG_H, DPI = 7.5, 5.8, 120  # inches of the axes' column, figure height, dots/inch
N_BEST = 3

# Qualitative colours, all distinct and readable on white: tab10 without its grey (grey is
# the single models'), then dark extras, then tab20's light shades. Beyond these, evenly
# spaced hues (see router_colours).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#bcbd22", "#17becf",
    "#000075", "#800000", "#008080", "#f032e6", "#b8860b", "#2f4f4f", "#6a3d9a",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
    "#dbdb8d", "#9edae5",
)
LINE_STYLES: tuple[Any, ...] = (
    "-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (1, 3)),
    (0, (3, 1, 1, 1)),
)
MARKERS = ("o", "^", "s", "v", "P", "D", "<", ">", "h", "p")

HEADER_ROUTER, HEADER_POLICY, HEADER_REFERENCE = "router", "policy", "reference"


@dataclass(frozen=True)
class PolicyStyle:
    linestyle: Any
    marker: str


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "plot"


def router_colours(routers: Iterable[str]) -> dict[str, str]:
    """One distinct colour per router name, assigned over the sorted names (so every plot of
    a report, built from the same names, agrees). Names beyond :data:`PALETTE` get evenly
    spaced hues, still distinct."""
    names = sorted(set(routers))
    extra = len(names) - len(PALETTE)
    colours = list(PALETTE)
    for i in range(max(extra, 0)):
        h = (i * 0.618033988749895) % 1.0  # golden-ratio hue steps: never repeat
        r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.55 + 0.3 * (i % 2))
        colours.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return dict(zip(names, colours))


def policy_styles(policies: Iterable[str]) -> dict[str, PolicyStyle]:
    """One line style and marker per policy, in first-seen order (the suite's order)."""
    names = list(dict.fromkeys(policies))
    return {p: PolicyStyle(LINE_STYLES[i % len(LINE_STYLES)], MARKERS[i % len(MARKERS)])
            for i, p in enumerate(names)}


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def best_curves(curves: Sequence[CurveResult], n: int = N_BEST) -> list[CurveResult]:
    """The ``n`` best curves: lowest ``match_cost_fraction`` first (the cost, relative to the
    best single model's, at which the curve matches its quality); curves that never match it
    after, by ``aiq`` then ``max_accuracy``."""
    def key(c: CurveResult) -> tuple[float, float, float, str]:
        m = c.metrics
        mcf = _finite(m.get("match_cost_fraction"))
        return (math.inf if mcf is None else mcf, -(_finite(m.get("aiq")) or 0.0),
                -(_finite(m.get("max_accuracy")) or 0.0), c.label)
    return sorted(curves, key=key)[:n]


def _best_point(curve: CurveResult, result: SuiteResult) -> tuple[float, float] | None:
    """(cost, accuracy) where a curve is at its best: where it reaches the best single
    model's quality, else its most accurate (cheapest among ties) sweep point."""
    ref = result.reference
    mcf = _finite(curve.metrics.get("match_cost_fraction"))
    if mcf is not None and ref.strong_cost > 0:
        return mcf * ref.strong_cost, ref.strong_accuracy
    if not curve.points:
        return None
    top = min(curve.points, key=lambda p: (-p.accuracy, p.cost))
    return top.cost, top.accuracy


def _best_text(curve: CurveResult, name: str, rank: int) -> str:
    mcf = _finite(curve.metrics.get("match_cost_fraction"))
    if mcf is not None:
        return f"#{rank} {name}: matches best single at {mcf:.2f}x cost"
    acc = _finite(curve.metrics.get("max_accuracy"))
    return f"#{rank} {name}: max accuracy {acc:.3f}" if acc is not None else f"#{rank} {name}"


def _dense(xs: np.ndarray, per_segment: int = 40) -> np.ndarray:
    """Hull x values with points inserted, so straight hull segments stay straight on a log
    axis."""
    if len(xs) < 2:
        return xs
    parts = [np.linspace(a, b, per_segment, endpoint=False) for a, b in itertools.pairwise(xs)]
    return np.concatenate([*parts, xs[-1:]])


class _Labels:
    """Text labels on the axes, each pointing at a spot; placed apart after the layout."""

    def __init__(self, ax: Axes) -> None:
        self.ax = ax
        self.items: list[Annotation] = []

    def add(self, text: str, xy: tuple[float, float], offset: tuple[float, float],
            edge: str, *, ha: str = "left", bold: bool = False) -> None:
        ann = self.ax.annotate(
            text, xy, xytext=offset, textcoords="offset points", fontsize=7, ha=ha,
            va="bottom", zorder=8, fontweight="bold" if bold else "normal",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.85,
                  "edgecolor": edge, "linewidth": 0.8},
            arrowprops={"arrowstyle": "-", "color": edge, "linewidth": 0.7,
                        "shrinkA": 0, "shrinkB": 2},
        )
        ann.set_in_layout(False)
        self.items.append(ann)

    def separate(self, fig: Figure) -> None:
        """Place the labels in order, each at the first vertical offset from its own (moving
        up, then down) where it overlaps none placed before and stays inside the axes; a
        label that would leave the axes sideways is mirrored."""
        from matplotlib.text import Text

        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        frame = self.ax.get_window_extent(renderer)
        placed: list[Bbox] = []

        def box(ann: Annotation) -> Bbox:
            ann.update_positions(renderer)
            return Text.get_window_extent(ann, renderer).padded(3.0)

        for ann in self.items:
            ox, oy0 = ann.xyann
            b = box(ann)
            if b.x0 < frame.x0 or b.x1 > frame.x1:
                ox = -ox
                ha = ann.get_horizontalalignment()
                ann.set_horizontalalignment("right" if ha == "left" else
                                            "left" if ha == "right" else "center")
            chosen = (ox, oy0)
            for k in range(120):  # up to 240 points above, then below
                oy = oy0 + 4.0 * k if k < 60 else oy0 - 4.0 * (k - 59)
                ann.xyann = (ox, oy)
                b = box(ann)
                if (b.y0 >= frame.y0 and b.y1 <= frame.y1
                        and not any(b.overlaps(o) for o in placed)):
                    chosen = (ox, oy)
                    break
            ann.xyann = chosen
            placed.append(box(ann))


def _baselines(ax: Axes, result: SuiteResult, labels: _Labels) -> list[Artist]:
    """The reference markers; returns their legend handles (each labelled)."""
    ref = result.reference
    singles = [b for b in result.baselines if b.kind == "single"]
    handles: list[Artist] = []
    handles.append(ax.scatter([b.cost * PER_K for b in singles], [b.accuracy for b in singles],
                              s=10, color="0.6", zorder=2, label="single models"))
    if len(singles) <= 12:
        for b in singles:
            if b.name in (ref.strong, ref.weak):  # labelled below
                continue
            ax.annotate(b.name.split("/")[-1], (b.cost * PER_K, b.accuracy), fontsize=6,
                        color="0.4", xytext=(3, 2), textcoords="offset points")
    handles.append(ax.scatter([ref.strong_cost * PER_K], [ref.strong_accuracy], s=70,
                              marker="D", color="tab:red", edgecolor="black", linewidth=0.6,
                              zorder=6, label=f"best single: {ref.strong}"))
    ax.axhline(ref.strong_accuracy, color="tab:red", linestyle="--", linewidth=0.8, zorder=1)
    labels.add(f"best single: {ref.strong.split('/')[-1]}",
               (ref.strong_cost * PER_K, ref.strong_accuracy), (12, -45), "tab:red",
               ha="right", bold=True)
    handles.append(ax.scatter([ref.weak_cost * PER_K], [ref.weak_accuracy], s=60, marker="s",
                              color="tab:green", edgecolor="black", linewidth=0.6, zorder=6,
                              label=f"cheapest: {ref.weak}"))
    labels.add(f"cheapest: {ref.weak.split('/')[-1]}",
               (ref.weak_cost * PER_K, ref.weak_accuracy), (6, -16), "tab:green")
    for b in result.baselines:
        if b.kind not in ("oracle", "random"):
            continue
        oracle = b.kind == "oracle"
        marker, color = ("*", "gold") if oracle else ("X", "black")
        handles.append(ax.scatter([b.cost * PER_K], [b.accuracy], s=160 if oracle else 60,
                                  marker=marker, color=color, edgecolor="black",
                                  linewidth=0.6, zorder=6, label=b.name))
        labels.add(b.name, (b.cost * PER_K, b.accuracy), (8, 4 if oracle else -14),
                   "goldenrod" if oracle else "black", bold=oracle)
    return handles


def _log_x(ax: Axes, result: SuiteResult) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    costs = [b.cost for b in result.baselines if b.cost > 0]
    if not costs or max(costs) / min(costs) <= LOG_X_SPAN:
        return
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=6)


def _header(label: str) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], linestyle="none", marker="none", label=label)


def curves_figure(
    result: SuiteResult, curves: Sequence[CurveResult], title: str, *,
    colours: dict[str, str] | None = None, styles: dict[str, PolicyStyle] | None = None,
    n_best: int = N_BEST,
) -> Figure:
    """The cost-quality figure of ``curves`` and every baseline (not saved; a plain Agg
    Figure, outside pyplot, so nothing is left open). ``colours`` (router -> colour) and
    ``styles`` (policy -> line style and marker) default to mappings of ``result``'s curves,
    so several figures of one result agree."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    colours = colours or router_colours(c.router for c in result.curves)
    styles = styles or policy_styles(c.policy for c in result.curves)
    missing = sorted({c.router for c in curves} - set(colours))
    if missing:  # routers the caller's mapping lacks: colours it does not use
        used = set(colours.values())
        spare = router_colours(f"{i:04d}" for i in range(len(used) + len(missing))).values()
        colours = {**colours, **dict(zip(missing, (c for c in spare if c not in used)))}
    if any(c.policy not in styles for c in curves):
        styles = {**policy_styles([*styles, *(c.policy for c in curves)]), **styles}
    policies = list(dict.fromkeys(c.policy for c in curves))
    one_policy = len(policies) == 1

    fig = Figure(figsize=(AXES_W + 1.0, FIG_H), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels = _Labels(ax)
    best = best_curves(curves, n_best)
    for curve in curves:
        colour, style = colours[curve.router], styles[curve.policy]
        highlight = any(curve is b for b in best)
        if curve.points:
            pts = np.array([[p.cost * PER_K, p.accuracy] for p in curve.points])
            ax.scatter(pts[:, 0], pts[:, 1], s=9, marker=style.marker, alpha=0.45,
                       color=colour, linewidths=0, zorder=3)
        if len(curve.hull):
            hx = _dense(curve.hull[:, 0])
            ax.plot(hx * PER_K, hull_value(curve.hull, hx), color=colour,
                    linestyle=style.linestyle, linewidth=2.4 if highlight else 1.4,
                    zorder=5 if highlight else 4, label=curve.label,
                    gid=f"curve:{curve.router}:{curve.policy}")
    handles: list[Any] = _baselines(ax, result, labels)
    for rank, curve in enumerate(best, 1):
        spot = _best_point(curve, result)
        if spot is None:
            continue
        xy = (spot[0] * PER_K, spot[1])
        colour = colours[curve.router]
        ax.scatter([xy[0]], [xy[1]], s=40, marker=styles[curve.policy].marker, color=colour,
                   edgecolor="black", linewidth=0.8, zorder=7)
        name = curve.router if one_policy else curve.label
        labels.add(_best_text(curve, name, rank), xy, (-10, 16 + 14 * (len(best) - rank)),
                   colour, ha="right")

    routers = sorted(dict.fromkeys(c.router for c in curves))
    entries: list[Any] = [_header(HEADER_ROUTER)]
    style0 = styles[policies[0]] if one_policy else PolicyStyle("-", "")
    entries += [Line2D([], [], color=colours[r], linestyle=style0.linestyle,
                       linewidth=1.8, label=r) for r in routers]
    if not one_policy:
        entries.append(_header(HEADER_POLICY))
        entries += [Line2D([], [], color="0.35", linestyle=styles[p].linestyle,
                           marker=styles[p].marker, markersize=4, linewidth=1.4, label=p)
                    for p in policies]
    entries += [_header(HEADER_REFERENCE), *handles]
    _legend(fig, ax, entries)

    _log_x(ax, result)
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel("mean quality (accuracy)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.grid(True, which="minor", axis="x", alpha=0.12)
    fig.canvas.draw()  # lay out at the final size, then keep the labels apart
    labels.separate(fig)
    return fig


def _legend(fig: Figure, ax: Axes, entries: list[Any]) -> None:
    """The legend right of the axes, in as many columns as the figure's height needs; the
    figure widens by the legend's width so the axes keep theirs."""
    headers = {HEADER_ROUTER, HEADER_POLICY, HEADER_REFERENCE}
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    room = (FIG_H - 0.4) * fig.dpi
    ncols = 1
    for _ in range(8):
        leg = ax.legend(handles=entries, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                        borderaxespad=0.0, fontsize=7, ncols=ncols, handlelength=2.6,
                        title_fontsize=7, framealpha=0.95)
        height = leg.get_window_extent(renderer).height
        if height <= room:
            break
        ncols = max(ncols + 1, math.ceil(ncols * height / room))
    for text in leg.get_texts():
        if text.get_text() in headers:
            text.set_fontweight("bold")
    width = leg.get_window_extent(renderer).width / fig.dpi
    fig.set_size_inches(AXES_W + width + 0.4, FIG_H)


def plot_curves(result: SuiteResult, curves: Sequence[CurveResult], path: Path,
                title: str, *, colours: dict[str, str] | None = None,
                styles: dict[str, PolicyStyle] | None = None) -> Path:
    """One PNG with ``curves`` and every baseline (see :func:`curves_figure`)."""
    fig = curves_figure(result, curves, title, colours=colours, styles=styles)
    try:
        fig.savefig(path)
    finally:
        fig.clear()
    return path


def plot_suite(result: SuiteResult, out_dir: Path) -> list[Path]:
    """``cost_quality.png`` with every curve, and one ``cost_quality_<policy>.png`` per
    policy of the suite (all routers under that policy); one router colour and one policy
    style across all of them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = result.suite.name
    colours = router_colours(c.router for c in result.curves)
    styles = policy_styles(c.policy for c in result.curves)
    paths = [plot_curves(result, result.curves, out_dir / "cost_quality.png",
                         f"{name}: cost vs quality", colours=colours, styles=styles)]
    for policy in styles:
        chosen = [c for c in result.curves if c.policy == policy]
        paths.append(plot_curves(result, chosen, out_dir / f"cost_quality_{slug(policy)}.png",
                                 f"{name}: {policy}", colours=colours, styles=styles))
    return paths
