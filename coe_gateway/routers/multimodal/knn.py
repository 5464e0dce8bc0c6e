"""Image-aware k-nearest-neighbour router (MMR-Bench ``knn``): k=50, cosine similarity of the
(fused) features, each expert's quality the mean score of the neighbours (uniform weights, as
the text router :mod:`coe_gateway.routers.knn`; ``weighting: softmax`` is available too).

Saved arrays per head: ``features`` (N, D) unit rows and ``scores`` (N, E), float16 (the
fitted head keeps the float16-rounded values, so a loaded router predicts the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from coe_gateway.routers.common import as_float16
from coe_gateway.routers.embedding import normalise
from coe_gateway.routers.knn import KNNRouter
from coe_gateway.routers.multimodal.base import Head, MultimodalRouter
from coe_gateway.routers.multimodal.inputs import Progress


class KNNHead(Head):
    """The neighbour search and the evidence rule of the text kNN router, over any rows."""

    def __init__(self, features: np.ndarray, scores: np.ndarray, k: int, weighting: str,
                 temperature: float) -> None:
        self.features = np.asarray(features, dtype=np.float32)  # (N, D) unit rows
        self.scores = np.asarray(scores, dtype=np.float32)  # (N, E)
        self.k, self.weighting, self.temperature = int(k), weighting, float(temperature)
        experts = [str(i) for i in range(self.scores.shape[1])]
        self.knn = KNNRouter(experts, k=self.k, weighting=weighting, temperature=temperature,
                             embeddings=self.features, scores=self.scores)

    @classmethod
    def fit(cls, x: np.ndarray, scores: np.ndarray, layout: tuple[int, ...],
            options: Mapping[str, Any], progress: Progress | None = None) -> KNNHead:
        """Keep the rows normalised and both arrays rounded to float16 (what is saved)."""
        return cls(as_float16(normalise(x)), as_float16(scores), int(options["k"]),
                   str(options["weighting"]), float(options["temperature"]))

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        idx, w = self.knn.neighbours(normalise(x))  # (B, k), (B, k)
        s = self.scores[idx]  # (B, k, E)
        wk = w[:, :, None] * np.isfinite(s)  # (B, k, E)
        total = wk.sum(axis=1)  # (B, E)
        mean = (wk * np.nan_to_num(s)).sum(axis=1) / np.maximum(total, 1e-12)
        q = np.where(total > 0, mean, self.knn.means)
        n_eff = total ** 2 / np.maximum((wk ** 2).sum(axis=1), 1e-12)
        return q.astype(np.float64), n_eff.astype(np.float64)

    def config(self) -> dict[str, Any]:
        return {"k": self.k, "weighting": self.weighting, "temperature": self.temperature}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"features": as_float16(self.features), "scores": as_float16(self.scores)}

    @classmethod
    def load(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> KNNHead:
        return cls(arrays["features"], arrays["scores"], int(config["k"]),
                   str(config["weighting"]), float(config["temperature"]))


class ImageKNNRouter(MultimodalRouter):
    kind = "image-knn"
    cheap = False
    head = KNNHead
    defaults = MappingProxyType({"k": 50, "weighting": "uniform", "temperature": 0.05})
