"""k-nearest-neighbour router: a query's expected quality with each expert is the mean score
that expert earned on the ``k`` most similar training queries (cosine similarity of
embeddings).

Neighbours are weighted uniformly (``weighting: uniform``, the plain kNN baseline) or by
``exp(similarity / temperature)`` (``weighting: softmax``). An expert with no result among the
neighbours gets its overall mean. Confidence follows :func:`coe_gateway.routers.common.
confidence` with the effective number of neighbours ``(sum w)^2 / sum w^2`` that have a result
for that expert.

Saved arrays: ``embeddings`` (N, D) and ``scores`` (N, E), float16 (NaN = no result).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coe_gateway.records import RecordSet
from coe_gateway.routers.base import Prediction, Query
from coe_gateway.routers.common import (EmbeddingRouter, as_float16, column_means, confidence,
                                        embed_records, expert_columns, score_matrix)
from coe_gateway.routers.embedding import EncoderSpec


class KNNRouter(EmbeddingRouter):
    kind = "knn"

    def __init__(
        self, experts: Sequence[str], encoder: Mapping[str, Any] | EncoderSpec | None = None,
        k: int = 32, weighting: str = "uniform", temperature: float = 0.05,
        embeddings: np.ndarray | None = None, scores: np.ndarray | None = None,
    ) -> None:
        super().__init__(experts, encoder)
        if weighting not in ("uniform", "softmax"):
            raise ValueError(f"knn: weighting must be 'uniform' or 'softmax', got {weighting!r}")
        if k < 1:
            raise ValueError(f"knn: k must be >= 1, got {k}")
        self.k, self.weighting, self.temperature = int(k), weighting, float(temperature)
        if embeddings is None or scores is None:
            raise ValueError("knn: a kNN router needs training embeddings and scores (use fit)")
        if scores.shape != (len(embeddings), len(self.experts)):
            raise ValueError(f"knn: scores {scores.shape} do not match {len(embeddings)} "
                             f"embeddings x {len(self.experts)} experts")
        self.embeddings = np.asarray(embeddings, dtype=np.float32)  # (N, D)
        self.scores = np.asarray(scores, dtype=np.float32)  # (N, E)
        self.means = column_means(self.scores)  # (E,)

    @classmethod
    def fit(cls, train: RecordSet, experts: Sequence[str] | None = None,
            **options: Any) -> KNNRouter:
        """Embed every training query; keep its scores."""
        names = expert_columns(train, experts)
        x = embed_records(train, options.get("encoder"))
        return cls(names, embeddings=x, scores=score_matrix(train, names), **options)

    def neighbours(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) indexes of the nearest training queries and their weights."""
        sims = x @ self.embeddings.T  # (B, N)
        k = min(self.k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (B, k)
        top = np.take_along_axis(sims, idx, axis=1)
        if self.weighting == "uniform":
            return idx, np.ones_like(top)
        w = np.exp((top - top.max(axis=1, keepdims=True)) / self.temperature)
        return idx, w

    def predict(self, queries: Sequence[Query]) -> Prediction:
        idx, w = self.neighbours(self.embed(queries))
        s = self.scores[idx]  # (B, k, E)
        have = np.isfinite(s)
        wk = w[:, :, None] * have  # (B, k, E)
        total = wk.sum(axis=1)  # (B, E)
        q = np.where(total > 0, (wk * np.nan_to_num(s)).sum(axis=1) / np.maximum(total, 1e-12),
                     self.means)
        n_eff = total ** 2 / np.maximum((wk ** 2).sum(axis=1), 1e-12)
        return Prediction(self.experts, q.astype(np.float64),
                          confidence(q, n_eff).astype(np.float64))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "k": self.k, "weighting": self.weighting,
                "temperature": self.temperature}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"embeddings": as_float16(self.embeddings), "scores": as_float16(self.scores)}
