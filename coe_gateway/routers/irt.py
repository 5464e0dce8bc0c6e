"""Difficulty-aware quality predictor (item-response-theory style).

Per-query learned predictors (MLP, MF) estimate every expert's quality freely, and with 29
experts the policy's argmax then picks whichever estimate is noisily high. This router
constrains the per-query part to what generalises: a query's *category* and its *predicted
difficulty* d (:mod:`coe_gateway.routers.features`). For each expert, a logistic regression
on ``phi = [category probs (C), d, d^2, category probs * d (C)]``::

    P(good answer | q, e) = sigmoid(w_e . phi(q) + b_e)

so each expert has its own strength per category and its own slope over difficulty (a strong
model keeps answering hard questions, a weak one stops): exactly what decides when a cheap
model suffices. Fractional scores are soft labels. Prediction is numpy.

Saved arrays: the query model's ``qm.*`` plus ``coef`` (E, 2C + 2) and ``intercept`` (E,).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coe_gateway.records import RecordSet
from coe_gateway.routers.base import Prediction, Query, Router
from coe_gateway.routers.common import confidence, expert_columns, score_matrix
from coe_gateway.routers.neural import sigmoid
from coe_gateway.routers.querymodel import QueryFeatures, QueryModel


def design(f: QueryFeatures) -> np.ndarray:
    """(B, 2C + 2) the per-expert regression's inputs."""
    d = f.difficulty[:, None]
    return np.column_stack([f.cats, d, d ** 2, f.cats * d])


def fit_logistic(phi: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """L2 logistic regression with soft labels y in 0..1 (NaN rows skipped)."""
    from sklearn.linear_model import LogisticRegression

    keep = np.isfinite(y)
    phi, y = phi[keep], y[keep]
    if not len(y) or y.min() == y.max():
        p = float(np.clip(y.mean() if len(y) else 0.5, 1e-3, 1 - 1e-3))
        return np.zeros(phi.shape[1], np.float32), float(np.log(p / (1 - p)))
    xx = np.concatenate([phi, phi])
    yy = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    ww = np.concatenate([y, 1.0 - y])
    clf = LogisticRegression(C=c, max_iter=3000).fit(xx, yy, sample_weight=ww)
    return clf.coef_[0].astype(np.float32), float(clf.intercept_[0])


class IRTRouter(Router):
    kind = "irt"

    def __init__(self, experts: Sequence[str], query_model: QueryModel, coef: np.ndarray,
                 intercept: np.ndarray, c: float = 1.0) -> None:
        super().__init__(experts)
        if coef.shape[0] != len(self.experts) or len(intercept) != len(self.experts):
            raise ValueError(f"irt: coef {coef.shape} does not match {len(self.experts)} experts")
        self.query_model, self.c = query_model, float(c)
        self.coef, self.intercept = np.asarray(coef, np.float32), np.asarray(intercept, np.float32)

    @classmethod
    def fit(cls, train: RecordSet, experts: Sequence[str] | None = None,
            **options: Any) -> IRTRouter:
        """Options: ``c`` (inverse L2 strength of the per-expert regressions) and the query
        model's (``encoder``, ``label_files``, ``classifier_c``, ``ridge_alpha``,
        ``trust_query_category``, ``seed``)."""
        opts = dict(options)
        c = float(opts.pop("c", 1.0))
        names = expert_columns(train, experts)
        scores = score_matrix(train, names)
        qm, feats = QueryModel.fit(train, scores, opts)
        if opts:
            raise ValueError(f"irt: unknown option(s) {sorted(opts)}")
        phi = design(feats)
        fitted = [fit_logistic(phi, scores[:, e], c) for e in range(len(names))]
        return cls(names, qm, np.stack([w for w, _ in fitted]),
                   np.array([b for _, b in fitted], np.float32), c)

    def predict(self, queries: Sequence[Query]) -> Prediction:
        phi = design(self.query_model.features(queries))
        p = sigmoid(phi @ self.coef.T + self.intercept).astype(np.float64)  # (B, E)
        return Prediction(self.experts, p, confidence(p))

    def config(self) -> dict[str, Any]:
        return {"query_model": self.query_model.config(), "c": self.c}

    def arrays(self) -> dict[str, np.ndarray]:
        return {**self.query_model.arrays(), "coef": self.coef, "intercept": self.intercept}

    @classmethod
    def from_saved(cls, experts: Sequence[str], config: Mapping[str, Any],
                   arrays: Mapping[str, np.ndarray]) -> IRTRouter:
        return cls(experts, QueryModel.restore(config["query_model"], arrays), arrays["coef"],
                   arrays["intercept"], float(config.get("c", 1.0)))
