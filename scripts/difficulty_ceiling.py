"""How much does routing depend on knowing a query's difficulty? (MMLU-Pro analysis)

The ``irt`` router's form (per-expert logistic regression on the category and the difficulty
d), fitted on the suite's train split with the *true* difficulty (the mean score of all
models on the query), then evaluated on the test split when d is known exactly, known with
Gaussian noise, or predicted from the text as the router does. Prints R^2 of d and the
trade-off policy's AIQ and cost to match the best single model for each.

    python scripts/difficulty_ceiling.py eval/mmlu_pro.yaml
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from coe_gateway.eval.runner import baselines, prepare
    from coe_gateway.eval.suite import load_suite
    from coe_gateway.profiles.holdout import summarise
    from coe_gateway.routers.base import Prediction
    from coe_gateway.routers.common import score_matrix
    from coe_gateway.routers.irt import design, fit_logistic
    from coe_gateway.routers.neural import sigmoid
    from coe_gateway.routers.querymodel import QueryFeatures, QueryModel

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("suite")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    args = ap.parse_args()
    p = prepare(load_suite(args.suite), args.suite)
    _, ref = baselines(p)
    names = p.train.models
    s_train = score_matrix(p.train, names)
    qm, f_train = QueryModel.fit(p.train, s_train, {"encoder": {"kind": "static"}})
    f_test = qm.features(p.test.queries())
    d_train, d_test = np.nanmean(s_train, axis=1), p.scores.mean(axis=1)
    phi = design(QueryFeatures(f_train.x, f_train.cats, d_train))
    fitted = [fit_logistic(phi, s_train[:, j], 1.0) for j in range(len(names))]
    w, b = np.stack([x for x, _ in fitted]), np.array([y for _, y in fitted])
    rng = np.random.default_rng(0)
    cases = [("true difficulty", d_test)]
    cases += [(f"true + noise sd {sd}", d_test + rng.normal(0, sd, len(d_test)))
              for sd in args.noise]
    cases += [("predicted from text (irt)", f_test.difficulty)]
    print(f"{'difficulty':28s} {'R^2':>6s} {'AIQ':>7s} {'cost to match':>14s}")
    for label, d in cases:
        q = sigmoid(design(QueryFeatures(f_test.x, f_test.cats, d)) @ w.T + b)
        m = summarise(p, ref, Prediction(tuple(names), q, np.ones_like(q)), names[0])
        r2 = 1 - np.mean((d - d_test) ** 2) / np.var(d_test)
        match = m["match_cost_fraction"]
        print(f"{label:28s} {r2:6.3f} {m['aiq']:7.4f} "
              f"{'never' if match is None else f'{match:.3f}':>14s}", flush=True)


if __name__ == "__main__":
    main()
