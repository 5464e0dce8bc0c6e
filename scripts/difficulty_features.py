"""Does a richer text representation predict MMLU-Pro difficulty better? (analysis)

The ``irt`` router predicts a query's difficulty (mean score of the training models) by ridge
regression on the static embedding, the category and surface features, then fits each
expert's logistic regression on it (:mod:`coe_gateway.routers.irt`). This script swaps in
other difficulty predictors, each cross-fitted on the train split exactly as the router's,
and reports R^2 of the difficulty on the test split and the trade-off policy's AIQ and cost
to match the best single model:

- ``ridge, static`` - the router as shipped;
- ``ridge, static + tf-idf`` - adds word 1-2-gram and character 2-5-gram tf-idf;
- ``boosted trees`` - gradient-boosted trees on the static embedding, category, surface
  features and a 256-column SVD of the tf-idf;
- ``ridge, MiniLM`` - the full all-MiniLM-L6-v2 instead of the static table (``--minilm``:
  about 15 minutes of embedding on 2 cores the first time, then from the disk cache).

    python scripts/difficulty_features.py eval/mmlu_pro.yaml [--seed 0] [--minilm]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np


def crossfit(make: Callable[[], Any], x: Any, y: np.ndarray, x_test: Any,
             folds: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold predictions for the training rows, and the all-rows model's on the test."""
    from sklearn.model_selection import KFold

    oof = np.zeros(len(y))
    for tr, va in KFold(folds, shuffle=True, random_state=seed).split(np.arange(len(y))):
        oof[va] = make().fit(x[tr], y[tr]).predict(x[va])
    return oof, make().fit(x, y).predict(x_test)


def main() -> None:
    from scipy import sparse
    from sklearn.decomposition import TruncatedSVD
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    from coe_gateway.eval.runner import baselines, prepare
    from coe_gateway.eval.suite import load_suite
    from coe_gateway.profiles.holdout import summarise
    from coe_gateway.routers.base import Prediction
    from coe_gateway.routers.common import score_matrix
    from coe_gateway.routers.features import text_features
    from coe_gateway.routers.irt import design, fit_logistic
    from coe_gateway.routers.neural import sigmoid
    from coe_gateway.routers.querymodel import QueryFeatures, QueryModel

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("suite")
    ap.add_argument("--seed", type=int, default=0, help="split seed")
    ap.add_argument("--minilm", action="store_true", help="also the full MiniLM encoder")
    args = ap.parse_args()
    suite = load_suite(args.suite)
    suite = suite.model_copy(update={"split": suite.split.model_copy(update={"seed": args.seed})})
    p = prepare(suite, args.suite)
    _, ref = baselines(p)
    names = p.train.models
    s_train = score_matrix(p.train, names)
    target, d_test = np.nanmean(s_train, axis=1), p.scores.mean(axis=1)
    texts = [q.text for q in p.train.queries()], [q.text for q in p.test.queries()]

    def static_features(encoder: dict[str, Any]) -> tuple[QueryModel, QueryFeatures,
                                                          QueryFeatures, np.ndarray, np.ndarray]:
        qm, f_tr = QueryModel.fit(p.train, s_train, {"encoder": encoder})
        f_te = qm.features(p.test.queries())
        dense = [np.column_stack([f.x, f.cats, qm.text_scale(text_features(t))])
                 for f, t in zip((f_tr, f_te), texts)]
        return qm, f_tr, f_te, dense[0], dense[1]

    def report(label: str, f_tr: QueryFeatures, f_te: QueryFeatures,
               d_tr: np.ndarray, d_te: np.ndarray) -> None:
        phi = design(QueryFeatures(f_tr.x, f_tr.cats, d_tr))
        fitted = [fit_logistic(phi, s_train[:, j], 1.0) for j in range(len(names))]
        w, b = np.stack([x for x, _ in fitted]), np.array([y for _, y in fitted])
        q = sigmoid(design(QueryFeatures(f_te.x, f_te.cats, d_te)) @ w.T + b)
        m = summarise(p, ref, Prediction(tuple(names), q, np.ones_like(q)), names[0])
        r2 = 1 - np.mean((d_te - d_test) ** 2) / np.var(d_test)
        match = m["match_cost_fraction"]
        print(f"{label:26s} {r2:6.3f} {m['aiq']:7.4f} "
              f"{'never' if match is None else f'{match:.3f}':>14s}", flush=True)

    print(f"{'difficulty predictor':26s} {'R^2':>6s} {'AIQ':>7s} {'cost to match':>14s}")
    _, f_tr, f_te, z_tr, z_te = static_features({"kind": "static"})
    report("ridge, static", f_tr, f_te, f_tr.difficulty, f_te.difficulty)
    word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=200_000, sublinear_tf=True)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3,
                           max_features=300_000, sublinear_tf=True)
    t_tr = sparse.hstack([word.fit_transform(texts[0]), char.fit_transform(texts[0])]).tocsr()
    t_te = sparse.hstack([word.transform(texts[1]), char.transform(texts[1])]).tocsr()
    x_tr = sparse.hstack([t_tr, sparse.csr_matrix(z_tr)]).tocsr()
    x_te = sparse.hstack([t_te, sparse.csr_matrix(z_te)]).tocsr()
    report("ridge, static + tf-idf", f_tr, f_te,
           *crossfit(lambda: Ridge(alpha=10.0), x_tr, target, x_te))
    svd = TruncatedSVD(256, random_state=0).fit(t_tr)
    h_tr = np.column_stack([svd.transform(t_tr), z_tr])
    h_te = np.column_stack([svd.transform(t_te), z_te])
    report("boosted trees", f_tr, f_te, *crossfit(
        lambda: HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05,
                                              max_leaf_nodes=15, l2_regularization=1.0),
        h_tr, target, h_te))
    if args.minilm:
        _, m_tr, m_te, _, _ = static_features({"kind": "sentence-transformers"})
        report("ridge, MiniLM", m_tr, m_te, m_tr.difficulty, m_te.difficulty)


if __name__ == "__main__":
    main()
