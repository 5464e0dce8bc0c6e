"""Image-aware LinearMF router (MMR-Bench ``linearmf``): TruncatedSVD of the (fused) features
to rank 128 (at most D - 1), then a Ridge regression (alpha 1) from the SVD coordinates to
every expert's score; predictions clipped to [0, 1].

Missing results are filled with the expert's training mean for the regression (rows with no
result at all are left out). Prediction is numpy: ``clip((x V^T) C^T + b, 0, 1)``.

Saved arrays per head: ``components`` (r, D), ``coef`` (E, r), ``intercept`` (E,).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from coe_gateway.routers.common import column_means
from coe_gateway.routers.multimodal.base import Head, MultimodalRouter
from coe_gateway.routers.multimodal.inputs import Progress


def filled_scores(x: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows with at least one result, NaN replaced by the column mean: (x', y')."""
    keep = np.isfinite(scores).any(axis=1)
    y = scores[keep]
    return x[keep], np.where(np.isfinite(y), y, column_means(y)[None, :])


class LinearMFHead(Head):
    def __init__(self, components: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                 rank: int, alpha: float, seed: int) -> None:
        self.components = np.asarray(components, dtype=np.float32)  # (r, D)
        self.coef = np.asarray(coef, dtype=np.float32)  # (E, r)
        self.intercept = np.asarray(intercept, dtype=np.float32)  # (E,)
        self.rank, self.alpha, self.seed = int(rank), float(alpha), int(seed)

    @classmethod
    def fit(cls, x: np.ndarray, scores: np.ndarray, layout: tuple[int, ...],
            options: Mapping[str, Any], progress: Progress | None = None) -> LinearMFHead:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.linear_model import Ridge

        xs, y = filled_scores(np.asarray(x, np.float64), scores)
        rank, alpha, seed = int(options["rank"]), float(options["alpha"]), int(options["seed"])
        r = max(1, min(rank, xs.shape[1] - 1, len(xs) - 1))
        svd = TruncatedSVD(n_components=r, random_state=seed).fit(xs)
        coords = xs @ svd.components_.T  # (N, r)
        ridge = Ridge(alpha=alpha).fit(coords, y)
        return cls(svd.components_, np.atleast_2d(ridge.coef_),
                   np.atleast_1d(ridge.intercept_), rank, alpha, seed)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        coords = np.asarray(x, np.float32) @ self.components.T  # (B, r)
        q = coords @ self.coef.T + self.intercept  # (B, E)
        return np.clip(q, 0.0, 1.0).astype(np.float64), None

    def config(self) -> dict[str, Any]:
        return {"rank": self.rank, "alpha": self.alpha, "seed": self.seed}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"components": self.components, "coef": self.coef, "intercept": self.intercept}

    @classmethod
    def load(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> LinearMFHead:
        return cls(arrays["components"], arrays["coef"], arrays["intercept"],
                   int(config["rank"]), float(config["alpha"]), int(config["seed"]))


class ImageLinearMFRouter(MultimodalRouter):
    kind = "image-linearmf"
    head = LinearMFHead
    defaults = MappingProxyType({"rank": 128, "alpha": 1.0, "seed": 0})
