"""Image-aware k-means router (MMR-Bench ``kmeans``; on the ``adaptive`` fusion it is MMR's
``kmeansnew``): 20 clusters of the (fused) training features (sklearn KMeans, seeded, fixed
``n_init``), each expert's mean score per cluster shrunk towards its overall mean
(``(sum + kappa * mean) / (n + kappa)``, as the text cluster router), and a query assigned to
its nearest centroid (Euclidean, as KMeans assigns). Confidence uses the cluster's count of
results for the expert.

Saved arrays per head: ``centroids`` (K, D), ``quality`` (K, E), ``counts`` (K, E).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from coe_gateway.routers.cluster import cluster_stats
from coe_gateway.routers.multimodal.base import Head, MultimodalRouter
from coe_gateway.routers.multimodal.inputs import Progress


class KMeansHead(Head):
    def __init__(self, centroids: np.ndarray, quality: np.ndarray, counts: np.ndarray,
                 clusters: int, kappa: float, n_init: int, seed: int) -> None:
        self.centroids = np.asarray(centroids, dtype=np.float32)  # (K, D)
        self.quality = np.asarray(quality, dtype=np.float32)  # (K, E)
        self.counts = np.asarray(counts, dtype=np.float32)  # (K, E)
        self.clusters, self.kappa = int(clusters), float(kappa)
        self.n_init, self.seed = int(n_init), int(seed)

    @classmethod
    def fit(cls, x: np.ndarray, scores: np.ndarray, layout: tuple[int, ...],
            options: Mapping[str, Any], progress: Progress | None = None) -> KMeansHead:
        from sklearn.cluster import KMeans

        clusters, kappa = int(options["clusters"]), float(options["kappa"])
        n_init, seed = int(options["n_init"]), int(options["seed"])
        k = max(1, min(clusters, len(x)))
        km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(
            np.asarray(x, np.float32))
        centroids = km.cluster_centers_.astype(np.float32)
        labels = nearest(np.asarray(x, np.float32), centroids)
        quality, counts = cluster_stats(labels, scores, k, kappa)
        return cls(centroids, quality, counts, clusters, kappa, n_init, seed)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        labels = nearest(np.asarray(x, np.float32), self.centroids)  # (B,)
        return (self.quality[labels].astype(np.float64),
                self.counts[labels].astype(np.float64))

    def config(self) -> dict[str, Any]:
        return {"clusters": self.clusters, "kappa": self.kappa, "n_init": self.n_init,
                "seed": self.seed}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centroids, "quality": self.quality, "counts": self.counts}

    @classmethod
    def load(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> KMeansHead:
        return cls(arrays["centroids"], arrays["quality"], arrays["counts"],
                   int(config["clusters"]), float(config["kappa"]), int(config["n_init"]),
                   int(config["seed"]))


def nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(B,) index of the nearest centroid (K, D) to each row of x (B, D), Euclidean."""
    d2 = (x ** 2).sum(axis=1, keepdims=True) - 2.0 * x @ centroids.T \
        + (centroids ** 2).sum(axis=1)[None, :]  # (B, K)
    return np.asarray(d2.argmin(axis=1), dtype=np.int64)


class ImageKMeansRouter(MultimodalRouter):
    kind = "image-kmeans"
    head = KMeansHead
    defaults = MappingProxyType({"clusters": 20, "kappa": 10.0, "n_init": 3, "seed": 0})
