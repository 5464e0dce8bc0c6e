"""Cluster router: k-means on the training queries' embeddings, each expert's mean quality per
cluster, and at query time a cosine assignment to the centroids.

Per-cluster quality is shrunk towards the expert's overall mean, ``(sum + kappa * mean) /
(n + kappa)``, so a small cluster does not swing the choice. Assignment is hard (the nearest
centroid) with ``temperature: 0``, else soft: ``softmax(cos / temperature)`` over centroids.
Confidence uses the cluster's (assignment-weighted) count of results for that expert.

Saved arrays: ``centroids`` (K, D), ``quality`` (K, E), ``counts`` (K, E).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coe_gateway.records import RecordSet
from coe_gateway.routers.base import Prediction, Query
from coe_gateway.routers.common import (EmbeddingRouter, column_means, confidence,
                                        embed_records, expert_columns, score_matrix,
                                        shrunk_mean)
from coe_gateway.routers.embedding import EncoderSpec, normalise


def kmeans(x: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Spherical-ish k-means of unit rows x (N, D): (unit centroids (K, D), labels (N,))."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(x)))
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
    return normalise(km.cluster_centers_), km.labels_.astype(np.int64)


def soft_assign(x: np.ndarray, centroids: np.ndarray, temperature: float) -> np.ndarray:
    """(B, K) assignment weights of unit rows x (B, D) to unit centroids (K, D)."""
    sims: np.ndarray = x @ centroids.T  # (B, K)
    if temperature <= 0:
        out = np.zeros_like(sims)
        out[np.arange(len(sims)), sims.argmax(axis=1)] = 1.0
        return out
    z = (sims - sims.max(axis=1, keepdims=True)) / temperature
    w = np.exp(z)
    weights: np.ndarray = w / w.sum(axis=1, keepdims=True)
    return weights


def cluster_stats(labels: np.ndarray, scores: np.ndarray, k: int,
                  kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster shrunk quality (K, E) and result counts (K, E) from labels (N,), scores
    (N, E) with NaN for no result."""
    have = np.isfinite(scores)
    onehot = np.eye(k)[labels]  # (N, K)
    counts = onehot.T @ have  # (K, E)
    totals = onehot.T @ np.nan_to_num(scores)  # (K, E)
    return shrunk_mean(totals, counts, column_means(scores)[None, :], kappa), counts


class ClusterRouter(EmbeddingRouter):
    kind = "cluster"

    def __init__(
        self, experts: Sequence[str], encoder: Mapping[str, Any] | EncoderSpec | None = None,
        clusters: int = 32, temperature: float = 0.0, kappa: float = 10.0, seed: int = 0,
        centroids: np.ndarray | None = None, quality: np.ndarray | None = None,
        counts: np.ndarray | None = None,
    ) -> None:
        super().__init__(experts, encoder)
        if centroids is None or quality is None or counts is None:
            raise ValueError("cluster: needs centroids, quality and counts (use fit)")
        if quality.shape != (len(centroids), len(self.experts)) or counts.shape != quality.shape:
            raise ValueError(f"cluster: quality {quality.shape} / counts {counts.shape} do not "
                             f"match {len(centroids)} centroids x {len(self.experts)} experts")
        self.clusters, self.temperature = int(clusters), float(temperature)
        self.kappa, self.seed = float(kappa), int(seed)
        self.centroids = np.asarray(centroids, dtype=np.float32)  # (K, D)
        self.quality = np.asarray(quality, dtype=np.float64)  # (K, E)
        self.counts = np.asarray(counts, dtype=np.float64)  # (K, E)

    @classmethod
    def fit(cls, train: RecordSet, experts: Sequence[str] | None = None,
            **options: Any) -> ClusterRouter:
        """k-means on the training embeddings, then per-cluster quality of each expert."""
        names = expert_columns(train, experts)
        x = embed_records(train, options.get("encoder"))
        k = int(options.get("clusters", 32))
        centroids, labels = kmeans(x, k, int(options.get("seed", 0)))
        quality, counts = cluster_stats(labels, score_matrix(train, names), len(centroids),
                                        float(options.get("kappa", 10.0)))
        return cls(names, centroids=centroids, quality=quality, counts=counts, **options)

    def predict(self, queries: Sequence[Query]) -> Prediction:
        w = soft_assign(self.embed(queries), self.centroids, self.temperature)  # (B, K)
        q = w @ self.quality  # (B, E)
        return Prediction(self.experts, q, confidence(q, w @ self.counts, self.kappa))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "clusters": self.clusters, "temperature": self.temperature,
                "kappa": self.kappa, "seed": self.seed}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centroids, "quality": self.quality.astype(np.float32),
                "counts": self.counts.astype(np.float32)}
