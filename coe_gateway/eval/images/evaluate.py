"""One split: costs, the lam grid and the references fitted on its train rows; a router
variant fitted on train, predicted on test, swept by the trade-off policy, measured.

The routers are the gateway's own (:func:`coe_gateway.routers.registry.router_class`), fitted
and queried through their array-level entry points ``fit_inputs`` / ``predict_inputs``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coe_gateway.eval.costs import CostModel
from coe_gateway.eval.images.data import EvalData
from coe_gateway.eval.images.frontier import (
    Reference,
    correctness_metrics,
    curve,
    curve_metrics,
    lam_grid,
    sweep_choices,
)
from coe_gateway.eval.images.references import best_single
from coe_gateway.eval.images.splits import Split
from coe_gateway.eval.images.variants import Variant, control_blocks


@dataclass
class SplitContext:
    """A split's rows and everything fitted on its train part. Arrays (N_side, E)."""

    data: EvalData
    split: Split
    est_train: np.ndarray
    est_test: np.ndarray
    real_test: np.ndarray
    lams: np.ndarray  # (L,)
    best: int
    ref: Reference
    costs: dict[str, Any] = field(default_factory=dict)  # the cost table (train-fitted)
    fitted: dict[str, Any] = field(default_factory=dict)  # fit_key -> router (this split)

    @property
    def scores_train(self) -> np.ndarray:
        return self.data.scores[self.split.train]

    @property
    def scores_test(self) -> np.ndarray:
        return self.data.scores[self.split.test]


def split_context(data: EvalData, split: Split, points: int) -> SplitContext:
    """Prices fixed by the suite; mean output tokens, best single model on train only."""
    train, test = data.records.subset(split.train), data.records.subset(split.test)
    cost_model = CostModel.fit(data.suite.costs, data.prices, train)
    est_train, est_test = cost_model.estimate(train), cost_model.estimate(test)
    real_test = cost_model.realised(test)
    best = best_single(data.scores[split.train], est_train)
    cost = real_test.mean(axis=0)  # (E,)
    ref = Reference(data.experts[best], float(data.scores[split.test][:, best].mean()),
                    float(cost[best]), float(cost.min()), float(cost.max()))
    table = cost_model.describe(data.prices)
    for j, m in enumerate(data.experts):
        table[m].update(test_accuracy=float(data.scores[split.test][:, j].mean()),
                        test_usd_per_1k=float(cost[j]) * 1000.0)
    return SplitContext(data, split, est_train, est_test, real_test,
                        lam_grid(est_test, points), best, ref, table)


def make_inputs(text: np.ndarray, blocks: Mapping[str, np.ndarray], present: np.ndarray) -> Any:
    """The routers' ModalityInputs from arrays."""
    from coe_gateway.routers.multimodal.inputs import ModalityInputs

    return ModalityInputs(text=text, blocks=dict(blocks), present=present)


def side_inputs(ctx: SplitContext, variant: Variant, at_test: bool, seed: int) -> Any:
    """The inputs one side of the split sees under the variant's control."""
    rows = ctx.split.test if at_test else ctx.split.train
    d = ctx.data
    blocks = {k: d.blocks[k][rows] for k in variant.features}
    present = d.present[rows] if variant.features else np.zeros(len(rows), bool)
    blocks, present = control_blocks(variant.control, blocks, present, d.blank, seed, at_test)
    return make_inputs(d.text[rows], blocks, present)


def fit_router(kind: str, variant: Variant, ctx: SplitContext, seed: int,
               options: Mapping[str, Any]) -> tuple[Any, float]:
    """The router for ``variant`` fitted on the train rows (reused across variants that
    share a fit, e.g. a control tested without images), and the seconds it took."""
    key = f"{kind}:{variant.fit_key}"
    if key in ctx.fitted:
        return ctx.fitted[key], 0.0
    from coe_gateway.routers.registry import router_class

    cls: Any = router_class(kind)
    opts: dict[str, Any] = {**options, "features": list(variant.features)}
    if variant.fusion != "own":
        opts["fusion"] = variant.fusion
    t0 = time.perf_counter()
    router = cls.fit_inputs(side_inputs(ctx, variant, False, seed), ctx.scores_train,
                            ctx.data.experts, **opts)
    ctx.fitted[key] = router
    return router, time.perf_counter() - t0


def router_quality(kind: str, variant: Variant, ctx: SplitContext, seed: int,
                   options: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, float]]:
    """(N_test, E) predicted quality aligned on the data's experts, and fit/predict seconds."""
    router, fit_s = fit_router(kind, variant, ctx, seed, options)
    t0 = time.perf_counter()
    pred = router.predict_inputs(side_inputs(ctx, variant, True, seed))
    quality = np.asarray(pred.select(ctx.data.experts).quality, np.float64)
    return quality, {"fit_s": fit_s, "predict_s": time.perf_counter() - t0}


def measure(ctx: SplitContext, quality: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Sweep ``quality`` (N_test, E) with the trade-off policy over the split's lam grid;
    the row's metrics and curve, and the choices (L, N_test)."""
    choices = sweep_choices(quality, ctx.est_test, ctx.lams)
    cost, acc = curve(choices, ctx.scores_test, ctx.real_test)
    values: dict[str, float] = {**curve_metrics(cost, acc, ctx.ref),
                                **correctness_metrics(quality, ctx.scores_test),
                                "max_accuracy": float(acc.max())}
    return {"metrics": values, "curve": {"cost": cost.tolist(), "accuracy": acc.tolist()}}, \
        choices
