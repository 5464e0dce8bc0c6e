"""Calibration of the learned quality predictors on an evaluation suite's test split.

Trains each router kind on the suite's train split (same split, same data as
``coe-gateway eval``) and prints the expected calibration error (15 equal-width bins over
every (query, expert) pair) of its predicted quality against the observed scores, with the
Brier score, and for MLP/MF the validation ECE before and after temperature scaling.

    python scripts/router_calibration.py eval/mmlu_pro.yaml [--kinds mlp mf irt knn]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from coe_gateway.eval.runner import prepare
    from coe_gateway.eval.suite import load_suite
    from coe_gateway.routers.neural import expected_calibration_error
    from coe_gateway.routers.registry import router_class

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("suite")
    ap.add_argument("--kinds", nargs="+", default=["mlp", "mf", "irt", "profile", "knn",
                                                   "cluster", "prior"])
    ap.add_argument("--encoder", default="static", help="static | minilm")
    args = ap.parse_args()
    p = prepare(load_suite(args.suite), args.suite)
    enc = {"kind": "static"} if args.encoder == "static" else {"threads": 1}
    print(f"{'router':10s} {'ECE test':>9s} {'Brier':>7s}  val ECE raw -> calibrated")
    for kind in args.kinds:
        opts = {} if kind == "prior" else {"encoder": enc}
        router = router_class(kind).fit(p.train, **opts)
        pred = router.predict(p.test.queries())
        cols = [p.test.models.index(e) for e in pred.experts]
        y = p.scores[:, cols]
        ece = expected_calibration_error(pred.quality, y)
        brier = float(np.mean((pred.quality - y) ** 2))
        cal = getattr(router, "calibration", {})
        extra = f"  {cal.get('ece_val_raw')} -> {cal.get('ece_val')}" if cal else ""
        print(f"{kind:10s} {ece:9.4f} {brier:7.4f}{extra}", flush=True)


if __name__ == "__main__":
    main()
