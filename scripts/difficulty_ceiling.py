"""How far can routing on MMLU-Pro get from what a query's text can tell? (analysis)

The ``irt`` router's form (per-expert logistic regression on the category and the difficulty
d), fitted on a split's train part with the *true* difficulty (the mean score of all models
on the query), then evaluated on its test part when d is known exactly, known with Gaussian
noise, or predicted from the text as the router does. Two more rows bound what any router
that knows only the category could do: the *category oracle* predicts each model's accuracy
on the query's category *in the test part itself*; the *category-and-difficulty oracle* adds
the true d to it. Both oracles look at the answers they are scored on, so they are upper
bounds, not routers. For comparison, the real ``irt`` and ``coe`` routers (true categories,
static encoder), trained on the split's train part. Prints, per case, R^2 of d and the trade-off policy's AIQ and cost to
match the best single model, for each split seed, then the mean over seeds.

    python scripts/difficulty_ceiling.py eval/mmlu_pro.yaml --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

import numpy as np


def category_oracle(cats_test: list[str | None], scores: np.ndarray) -> np.ndarray:
    """(N, M): each model's mean score over the test queries of the query's category."""
    out = np.zeros_like(scores, dtype=np.float64)
    labels = np.array([c or "" for c in cats_test])
    for c in set(labels):
        sel = labels == c
        out[sel] = scores[sel].mean(axis=0)
    return out


def run_seed(suite_path: str, seed: int, noise: list[float]) -> list[tuple[str, float, dict[str, Any]]]:
    """(case, R^2 of d, metrics) for one split seed."""
    from coe_gateway.eval.runner import baselines, prepare
    from coe_gateway.eval.suite import load_suite
    from coe_gateway.profiles.holdout import summarise
    from coe_gateway.routers.base import Prediction
    from coe_gateway.routers.common import score_matrix
    from coe_gateway.routers.irt import design, fit_logistic
    from coe_gateway.routers.neural import sigmoid
    from coe_gateway.routers.querymodel import QueryFeatures, QueryModel
    from coe_gateway.routers.registry import router_class

    suite = load_suite(suite_path)
    suite = suite.model_copy(update={"split": suite.split.model_copy(update={"seed": seed})})
    p = prepare(suite, suite_path)
    _, ref = baselines(p)
    names = p.train.models
    s_train = score_matrix(p.train, names)
    qm, f_train = QueryModel.fit(p.train, s_train, {"encoder": {"kind": "static"}})
    f_test = qm.features(p.test.queries())
    d_train, d_test = np.nanmean(s_train, axis=1), p.scores.mean(axis=1)
    phi = design(QueryFeatures(f_train.x, f_train.cats, d_train))
    fitted = [fit_logistic(phi, s_train[:, j], 1.0) for j in range(len(names))]
    w, b = np.stack([x for x, _ in fitted]), np.array([y for _, y in fitted])
    rng = np.random.default_rng(seed)
    cases = [("true difficulty", d_test)]
    cases += [(f"true + noise sd {sd}", d_test + rng.normal(0, sd, len(d_test))) for sd in noise]
    cases += [("predicted from text (irt)", f_test.difficulty)]

    def metrics(q: np.ndarray) -> dict[str, Any]:
        return summarise(p, ref, Prediction(tuple(names), q, np.ones_like(q)), names[0])

    out = []
    for label, d in cases:
        q = sigmoid(design(QueryFeatures(f_test.x, f_test.cats, d)) @ w.T + b)
        out.append((label, 1 - np.mean((d - d_test) ** 2) / np.var(d_test), metrics(q)))
    for kind in ("irt", "coe"):
        router = router_class(kind).fit(p.train, encoder={"kind": "static"})
        pred = router.predict(p.test.queries())
        out.append((f"{kind} router", np.nan, summarise(p, ref, pred, pred.experts[0])))
    oracle = category_oracle(list(p.test.categories), p.scores)
    out.append(("category oracle (test answers)", np.nan, metrics(oracle)))
    z = np.log(np.clip(oracle, 1e-3, 1 - 1e-3) / np.clip(1 - oracle, 1e-3, 1))
    with_d = sigmoid(z + 4.0 * (d_test - d_test.mean())[:, None])
    out.append(("category + true d oracle", 1.0, metrics(with_d)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("suite")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    head = f"{'seed':>4s} {'case':32s} {'R^2':>6s} {'AIQ':>7s} {'cost to match':>14s}"
    print(head)
    for seed in args.seeds:
        for label, r2, m in run_seed(args.suite, seed, args.noise):
            match = m["match_cost_fraction"]
            rows[label].append((r2, m["aiq"], np.nan if match is None else match))
            print(f"{seed:4d} {label:32s} {r2:6.3f} {m['aiq']:7.4f} "
                  f"{'never' if match is None else f'{match:.3f}':>14s}", flush=True)
    if len(args.seeds) > 1:
        print(f"\nmean over seeds {args.seeds}\n{head}")
        for label, vals in rows.items():
            a = np.array(vals)
            r2 = a[:, 0].mean() if np.isfinite(a[:, 0]).all() else np.nan
            match = a[:, 2][np.isfinite(a[:, 2])]
            print(f"{'all':>4s} {label:32s} {r2:6.3f} {a[:, 1].mean():7.4f} "
                  f"{match.mean() if len(match) else np.nan:6.3f} +- {match.std():.3f}"
                  f" ({len(a) - len(match)} never)")


if __name__ == "__main__":
    main()
