"""Cost-quality plots stay legible with many curves: legend outside the axes, one colour per
router, one line style per policy, reference markers labelled, the best curves named."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation, Text

from coe_gateway.eval.plots import (
    PALETTE,
    best_curves,
    curves_figure,
    plot_curves,
    plot_suite,
    policy_styles,
    router_colours,
)
from coe_gateway.eval.runner import Baseline, CurveResult, Reference, SuiteResult, curve_metrics
from coe_gateway.eval.suite import Suite
from coe_gateway.eval.sweep import Point

POLICIES = ["trade-off", "cheapest-above-target", "agree-gated"]
# Answer-aware cascade names among them: the plots must not assume a fixed set.
ROUTERS = ["prior", "knn", "cluster", "coe-true-category", "coe-classifier", "mlp", "mf",
           "irt", "irt-classifier", "profile", "cascade-irt", "zz-late"]
WEAK_COST, STRONG_COST = 2e-5, 7e-4  # USD a query: 1.5 decades between them


def _curve(router: int, policy: int, ref: Reference) -> CurveResult:
    """A saturating curve from the cheapest model towards (and for some, past) the best
    single model's quality; the gain differs per router and policy."""
    costs = np.geomspace(WEAK_COST, STRONG_COST * 1.1, 16)
    top = ref.strong_accuracy + 0.03 - 0.006 * router - 0.01 * policy
    rate = 3.0 + 0.4 * router + policy
    x = np.log(costs / WEAK_COST) / np.log(costs[-1] / WEAK_COST)
    acc = ref.weak_accuracy + (top - ref.weak_accuracy) * (1 - np.exp(-rate * x)) / (
        1 - np.exp(-rate))
    points = [Point(float(i), float(a), float(c)) for i, (a, c) in enumerate(zip(acc, costs))]
    hull, values = curve_metrics(points, ref, n_models=6)
    return CurveResult(ROUTERS[router], POLICIES[policy], "synthetic", "lambda", {},
                       points[len(points) // 2], points, hull, values, 0.0)


def _result(routers: int = len(ROUTERS)) -> SuiteResult:
    ref = Reference("tiny-model", "big-model", 0.41, WEAK_COST, 0.71, STRONG_COST,
                    (WEAK_COST, STRONG_COST), "normalised cost")
    base = [Baseline("tiny-model", "single", 0.41, WEAK_COST),
            Baseline("big-model", "single", 0.71, STRONG_COST),
            *(Baseline(f"org/model-{i}", "single", 0.2 + 0.05 * i, 4e-5 * (i + 1))
              for i in range(8)),
            Baseline("oracle", "oracle", 0.95, 5e-5),
            Baseline("random (seed 0)", "random", 0.4, 1.5e-4)]
    curves = [_curve(r, p, ref) for r in range(routers) for p in range(len(POLICIES))]
    suite = Suite.model_construct(name="synthetic")
    return SuiteResult(suite, "synthetic.yaml", {}, {}, base, ref, curves)


@pytest.fixture(scope="module")
def result() -> SuiteResult:
    return _result()


@pytest.fixture(scope="module")
def combined(result: SuiteResult) -> Figure:
    return curves_figure(result, result.curves, "synthetic: cost vs quality")


def _curve_lines(fig: Figure) -> dict[tuple[str, str], Line2D]:
    out = {}
    for line in fig.axes[0].get_lines():
        gid = line.get_gid() or ""
        if gid.startswith("curve:"):
            _, router, policy = gid.split(":", 2)
            out[router, policy] = line
    return out


def _annotations(fig: Figure) -> list[Annotation]:
    return [t for t in fig.axes[0].texts if isinstance(t, Annotation)]


def test_synthetic_input_is_many_curves(result: SuiteResult) -> None:
    assert len(result.curves) >= 20 and len({c.policy for c in result.curves}) == 3
    assert any(c.metrics["match_cost_fraction"] is None for c in result.curves)  # fallback


def test_plot_suite_writes_every_png(result: SuiteResult, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    paths = plot_suite(result, tmp_path / "out")
    assert [p.name for p in paths] == ["cost_quality.png", "cost_quality_trade-off.png",
                                       "cost_quality_cheapest-above-target.png",
                                       "cost_quality_agree-gated.png"]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000, p
    assert plt.get_fignums() == before  # no figure left open in pyplot


def test_output_is_deterministic(result: SuiteResult, tmp_path: Path) -> None:
    a = plot_curves(result, result.curves, tmp_path / "a.png", "t")
    b = plot_curves(result, result.curves, tmp_path / "b.png", "t")
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("policy", [None, *POLICIES])
def test_legend_is_outside_the_axes(result: SuiteResult, policy: str | None) -> None:
    curves = [c for c in result.curves if policy is None or c.policy == policy]
    fig = curves_figure(result, curves, "t")
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert legend is not None
    leg_box, ax_box = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert not leg_box.overlaps(ax_box)
    assert leg_box.x0 >= ax_box.x1  # to the right ...
    assert leg_box.x1 <= fig.bbox.x1 + 1 and leg_box.y0 >= fig.bbox.y0 - 1  # ... and shown
    assert ax_box.width / fig.dpi > 6.0  # the figure widened instead of the axes shrinking


def test_tall_legend_takes_columns_and_stays_inside_the_figure() -> None:
    many = _result(routers=len(ROUTERS))
    extra = [CurveResult(f"router-{i:02d}", c.policy, c.kind, c.sweep_param, c.params,
                         c.operating, c.points, c.hull, c.metrics, 0.0)
             for i in range(30) for c in many.curves[:1]]
    many.curves += extra
    fig = curves_figure(many, many.curves, "t")
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legend = fig.axes[0].get_legend()
    assert legend is not None
    box = legend.get_window_extent(renderer)
    assert box.y0 >= fig.bbox.y0 - 1 and box.x1 <= fig.bbox.x1 + 1
    assert not box.overlaps(fig.axes[0].get_window_extent(renderer))


def test_one_colour_per_router_one_style_per_policy(combined: Figure,
                                                   result: SuiteResult) -> None:
    lines = _curve_lines(combined)
    assert len(lines) == len(result.curves)
    colour_of: dict[str, set[str]] = {}
    style_of: dict[str, set[str]] = {}
    for (router, policy), line in lines.items():
        colour_of.setdefault(router, set()).add(str(line.get_color()))
        style_of.setdefault(policy, set()).add(str(line.get_linestyle()))
    assert all(len(v) == 1 for v in colour_of.values())  # a router keeps its colour
    colours = [next(iter(v)) for v in colour_of.values()]
    assert len(set(colours)) == len(ROUTERS)  # no two routers share one
    styles = [next(iter(v)) for v in style_of.values()]
    assert all(len(v) == 1 for v in style_of.values()) and len(set(styles)) == len(POLICIES)


def test_colours_agree_across_the_plots_of_a_report(result: SuiteResult,
                                                    combined: Figure) -> None:
    mapping = router_colours(c.router for c in result.curves)
    for policy in POLICIES:
        fig = curves_figure(result, [c for c in result.curves if c.policy == policy], policy)
        for (router, _), line in _curve_lines(fig).items():
            assert line.get_color() == mapping[router]
    for (router, _), line in _curve_lines(combined).items():
        assert line.get_color() == mapping[router]


def test_a_partial_mapping_is_completed_with_unused_colours(result: SuiteResult) -> None:
    fig = curves_figure(result, result.curves, "t", colours={"prior": PALETTE[1]},
                        styles={"agree-gated": policy_styles(["a"])["a"]})
    lines = _curve_lines(fig)
    assert lines["prior", "trade-off"].get_color() == PALETTE[1]
    by_router = {r: line.get_color() for (r, _), line in lines.items()}
    assert len(set(by_router.values())) == len(ROUTERS)
    assert lines["knn", "agree-gated"].get_linestyle() == "-"
    assert len({line.get_linestyle() for (_, p), line in lines.items()}) == len(POLICIES)


def test_router_colours_are_distinct_and_order_free() -> None:
    names = [f"r{i}" for i in range(len(PALETTE) + 15)]
    mapping = router_colours(names)
    assert len(set(mapping.values())) == len(names)
    assert router_colours(reversed(names)) == mapping
    assert router_colours(["b", "a", "b"]) == {"a": PALETTE[0], "b": PALETTE[1]}
    styles = policy_styles(["x", "y", "x", "z"])
    assert list(styles) == ["x", "y", "z"]
    assert len({(s.linestyle, s.marker) for s in styles.values()}) == 3


def test_reference_markers_are_labelled(combined: Figure, result: SuiteResult) -> None:
    ax = combined.axes[0]
    marks = {str(c.get_label()) for c in ax.collections}
    strong = f"best single: {result.reference.strong}"
    assert {strong, "oracle", "single models", "random (seed 0)"} <= marks
    legend = ax.get_legend()
    assert legend is not None
    entries = {t.get_text() for t in legend.get_texts()}
    assert {strong, "oracle", "single models", *ROUTERS, *POLICIES} <= entries
    on_plot = {a.get_text() for a in _annotations(combined)}
    assert "oracle" in on_plot and f"best single: {result.reference.strong}" in on_plot


def test_best_curves_are_named_at_their_best_point(combined: Figure,
                                                   result: SuiteResult) -> None:
    best = best_curves(result.curves)
    mcf = [c.metrics["match_cost_fraction"] for c in result.curves]
    finite = sorted(v for v in mcf if v is not None and math.isfinite(v))
    assert [c.metrics["match_cost_fraction"] for c in best] == finite[:3]
    texts = {a.get_text(): a for a in _annotations(combined)}
    ref = result.reference
    for rank, curve in enumerate(best, 1):
        ann = next(a for t, a in texts.items() if t.startswith(f"#{rank} {curve.label}:"))
        value = curve.metrics["match_cost_fraction"]
        assert value is not None
        assert ann.xy == pytest.approx((value * ref.strong_cost * 1000, ref.strong_accuracy))
    # and the labels do not overlap one another, nor leave the axes
    renderer = combined.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = combined.axes[0].get_window_extent(renderer)
    boxes = []
    for ann in _annotations(combined):
        ann.update_positions(renderer)
        boxes.append(Text.get_window_extent(ann, renderer))
    for i, a in enumerate(boxes):
        assert frame.x0 - 1 <= a.x0 and a.x1 <= frame.x1 + 1
        assert frame.y0 - 1 <= a.y0 and a.y1 <= frame.y1 + 1
        assert not any(a.overlaps(b) for b in boxes[i + 1:])


def test_best_curves_fall_back_to_aiq_without_a_match(result: SuiteResult) -> None:
    never = [c for c in result.curves if c.metrics["match_cost_fraction"] is None]
    assert len(never) >= 3
    best = best_curves(never, 2)
    aiq = sorted((c.metrics["aiq"] or 0.0 for c in never), reverse=True)
    assert [c.metrics["aiq"] for c in best] == aiq[:2]
    fig = curves_figure(result, never, "never matches")
    assert any(a.get_text().startswith("#1 ") and "max accuracy" in a.get_text()
               for a in _annotations(fig))


def test_axes_log_cost_in_usd_per_1k(combined: Figure, result: SuiteResult) -> None:
    ax = combined.axes[0]
    assert ax.get_xscale() == "log"  # costs span 1.5 decades
    assert "USD" in ax.get_xlabel() and "1,000 queries" in ax.get_xlabel()
    narrow = _result(routers=2)
    for b in narrow.baselines:
        b.cost = STRONG_COST / 2 + b.cost / 10
    assert curves_figure(narrow, narrow.curves, "t").axes[0].get_xscale() == "linear"
