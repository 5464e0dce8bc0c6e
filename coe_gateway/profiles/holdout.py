"""The held-out-model experiment: can a model absent from training be routed to from its
profile alone?

On an evaluation suite's data, split and cost model (:mod:`coe_gateway.eval`), with one model
H held out:

1. ``without``: the profile router trained on the other models, H not a candidate;
2. ``with H @ f``: the same router (not retrained) plus H's profile built from a fraction f
   (default 5%) of H's training records;
3. ``with H @ 100%``: H's profile from all its training records;
4. ``trained with H``: the profile router trained with H among the training models.

Each is swept with the trade-off policy; the table gives AIQ, the cost to match the best
single model (fraction of its cost), the peak accuracy and H's share of the answers at the
peak-AIQ operating point region (the share at lam = 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from coe_gateway.routers.base import Prediction


def summarise(prepared: Any, ref: Any, prediction: Prediction, held_out: str) -> dict[str, Any]:
    """AIQ, cost to match, max accuracy and H's share, for a trade-off sweep."""
    from coe_gateway.eval.runner import curve_metrics
    from coe_gateway.eval.suite import Sweep
    from coe_gateway.eval.sweep import Arrays, sweep, sweep_values
    from coe_gateway.policies import TradeOff

    arrays = Arrays.align(prediction, prepared.test.models, prepared.est, prepared.scores,
                          prepared.real)
    policy = TradeOff()
    points = sweep(policy, arrays, sweep_values(Sweep(count=50), policy, arrays, "", ""))
    _, m = curve_metrics(points, ref, len(prepared.test.models))
    shares = [pt.shares.get(held_out, 0.0) for pt in points]
    return {"aiq": m["aiq"], "match_cost_fraction": m["match_cost_fraction"],
            "max_accuracy": m["max_accuracy"], "held_out_share_max": max(shares)}


def run_holdout(suite_path: str, held_out: str, fraction: float = 0.05, seed: int = 0,
                options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows of the experiment's table (see the module docstring)."""
    from coe_gateway.eval.runner import baselines, prepare
    from coe_gateway.eval.suite import load_suite
    from coe_gateway.routers.profile import ProfileRouter

    prepared = prepare(load_suite(suite_path), suite_path)
    _, ref = baselines(prepared)
    train, test = prepared.train, prepared.test
    if held_out not in train.models:
        raise ValueError(f"{held_out!r} is not a model of {suite_path}: {train.models}")
    opts = dict(options or {})
    others = [m for m in train.models if m != held_out]
    base = ProfileRouter.fit(train, others, **opts)
    rng = np.random.default_rng(seed)
    part = train.subset(np.flatnonzero(rng.random(len(train)) < fraction))
    small = base.profile_of(held_out, part, {"fraction": fraction, "n_records": len(part),
                                             "seed": seed})
    full = base.profile_of(held_out, train, {"fraction": 1.0, "n_records": len(train)})
    queries = test.queries()
    rows = []
    for label, router in (
        ("without H", base),
        (f"+ H from a {fraction:.0%} profile ({small.overall.n} records)",
         base.with_profile(small)),
        (f"+ H from a 100% profile ({full.overall.n} records)", base.with_profile(full)),
        ("trained with H", ProfileRouter.fit(train, **opts)),
    ):
        rows.append({"router": label, **summarise(prepared, ref, router.predict(queries),
                                                  held_out)})
    return rows
