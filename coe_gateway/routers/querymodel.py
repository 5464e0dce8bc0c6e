"""What the difficulty-aware routers know of a query: its embedding, its category
probabilities and its predicted difficulty (:mod:`coe_gateway.routers.features`).

The category is the query's own label when it carries a known one and
``trust_query_category`` is on, else the classifier's probabilities (multinomial logistic
regression on embeddings, as in :mod:`coe_gateway.routers.coe`). With no labelled data at all
there are no category features.

Persisted with its owner router: arrays ``qm.*`` and the config keys of :meth:`config`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from coe_gateway.records import RecordSet
from coe_gateway.routers.base import Query
from coe_gateway.routers.coe import fit_classifier, read_labelled, softmax
from coe_gateway.routers.common import embed_records
from coe_gateway.routers.embedding import EncoderSpec, embed_texts
from coe_gateway.routers.features import DifficultyModel, Standardiser, text_features


@dataclass
class QueryFeatures:
    """x: (B, D) embeddings; cats: (B, C) category probabilities; difficulty: (B,)."""

    x: np.ndarray
    cats: np.ndarray
    difficulty: np.ndarray


@dataclass
class QueryModel:
    encoder: EncoderSpec
    labels: list[str]
    clf_coef: np.ndarray
    clf_intercept: np.ndarray
    text_scale: Standardiser
    difficulty: DifficultyModel
    trust_query_category: bool = True

    @classmethod
    def fit(cls, train: RecordSet, scores: np.ndarray, options: dict[str, Any]
            ) -> tuple[QueryModel, QueryFeatures]:
        """Fit on the training records (scores (N, E), NaN = none); returns the model and the
        training rows' features with out-of-fold difficulty. Consumes its ``options``:
        ``encoder``, ``label_files``, ``classifier_c``, ``ridge_alpha``,
        ``trust_query_category``, ``seed``."""
        enc = EncoderSpec.from_config(options.pop("encoder", None))
        x = embed_records(train, enc)
        keep = [i for i, c in enumerate(train.categories) if c]
        texts, extra = read_labelled(list(options.pop("label_files", []) or []))
        # keep holds only the records with a category
        labelled = [cast(str, train.categories[i]) for i in keep] + extra
        c_reg = float(options.pop("classifier_c", 10.0))
        if len(set(labelled)) >= 2:
            xs = np.concatenate([x[keep]] + ([embed_texts(texts, enc)] if texts else []))
            labels, coef, intercept = fit_classifier(xs, labelled, c_reg)
        else:
            labels, coef, intercept = [], np.zeros((0, x.shape[1]), np.float32), \
                np.zeros(0, np.float32)
        scale = Standardiser.fit(text_features([q.text for q in train.queries()]))
        model = cls(enc, labels, coef, intercept, scale, DifficultyModel(np.zeros(0), 0.0),
                    bool(options.pop("trust_query_category", True)))
        cats = model.category_probs(train.queries(), x)
        z = model._z(x, cats, [q.text for q in train.queries()])
        target = np.nanmean(np.where(np.isfinite(scores), scores, np.nan), axis=1)
        target = np.where(np.isfinite(target), target, np.nanmean(target))
        model.difficulty, oof = DifficultyModel.fit_crossed(
            z, target, float(options.pop("ridge_alpha", 10.0)), seed=int(options.pop("seed", 0)))
        return model, QueryFeatures(x, cats, oof)

    def _z(self, x: np.ndarray, cats: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return np.column_stack([x, cats, self.text_scale(text_features(texts))])

    def category_probs(self, queries: Sequence[Query], x: np.ndarray) -> np.ndarray:
        """(B, C): the trusted label one-hot, else the classifier's softmax."""
        if not self.labels:
            return np.zeros((len(queries), 0))
        probs = softmax(x @ self.clf_coef.T + self.clf_intercept)
        if self.trust_query_category:
            for i, q in enumerate(queries):
                if q.category in self.labels:
                    probs[i] = 0.0
                    probs[i, self.labels.index(q.category)] = 1.0
        return probs

    def features(self, queries: Sequence[Query]) -> QueryFeatures:
        x = embed_texts([q.text for q in queries], self.encoder)
        cats = self.category_probs(queries, x)
        d = self.difficulty(self._z(x, cats, [q.text for q in queries]))
        return QueryFeatures(x, cats, d)

    # -- persistence --------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"encoder": self.encoder.to_config(), "labels": self.labels,
                "trust_query_category": self.trust_query_category,
                "difficulty_intercept": self.difficulty.intercept}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"qm.clf_coef": self.clf_coef, "qm.clf_intercept": self.clf_intercept,
                "qm.text_mean": self.text_scale.mean.astype(np.float32),
                "qm.text_std": self.text_scale.std.astype(np.float32),
                "qm.difficulty": np.asarray(self.difficulty.coef, np.float32)}

    @classmethod
    def restore(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> QueryModel:
        return cls(
            EncoderSpec.from_config(config.get("encoder")), list(config.get("labels", [])),
            arrays["qm.clf_coef"], arrays["qm.clf_intercept"],
            Standardiser(arrays["qm.text_mean"].astype(np.float64),
                         arrays["qm.text_std"].astype(np.float64)),
            DifficultyModel(arrays["qm.difficulty"], float(config["difficulty_intercept"])),
            bool(config.get("trust_query_category", True)))
