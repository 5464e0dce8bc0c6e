"""Image-aware MLP-MF router (MMR-Bench ``mlpmf``): an MLP maps the (fused) features to a
64-d latent z, each expert has an embedding w_e and a bias b_e, and ``logit = z W^T + b``.

Trained with masked binary cross-entropy on the 0/1 scores, seeded (weights initialised after
``torch.manual_seed``), early stopping on a train-internal validation split and one
temperature fitted on it (:func:`coe_gateway.routers.neural.train_logits_model`); prediction
is numpy, ``sigmoid(logit / T)``.

Saved arrays per head: ``w1`` (D, H), ``b1`` (H,), ``w2`` (H, L), ``b2`` (L,),
``model_emb`` (E, L), ``bias`` (E,).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from coe_gateway.routers.multimodal.base import Head, MultimodalRouter, train_options
from coe_gateway.routers.multimodal.inputs import Progress
from coe_gateway.routers.neural import sigmoid, train_logits_model

WEIGHTS = ("w1", "b1", "w2", "b2", "model_emb", "bias")


def _module(dim: int, hidden: int, latent: int, experts: int, dropout: float) -> Any:
    import torch

    class MLPMF(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = torch.nn.Sequential(
                torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                torch.nn.Linear(hidden, latent))
            self.model_emb = torch.nn.Parameter(torch.randn(experts, latent) * 0.1)
            self.bias = torch.nn.Parameter(torch.zeros(experts))

        def forward(self, x: Any) -> Any:  # x (B, D) -> logits (B, E)
            return self.mlp(x) @ self.model_emb.T + self.bias

    return MLPMF()


class MLPMFHead(Head):
    def __init__(self, weights: Mapping[str, np.ndarray], temperature: float,
                 info: Mapping[str, Any]) -> None:
        missing = [w for w in WEIGHTS if w not in weights]
        if missing:
            raise ValueError(f"image-mlpmf: weights {missing} are missing")
        self.weights = {w: np.asarray(weights[w], dtype=np.float32) for w in WEIGHTS}
        self.temperature, self.info = float(temperature), dict(info)

    @classmethod
    def fit(cls, x: np.ndarray, scores: np.ndarray, layout: tuple[int, ...],
            options: Mapping[str, Any], progress: Progress | None = None) -> MLPMFHead:
        import torch

        topts = train_options(options)
        torch.manual_seed(topts.seed)
        module = _module(x.shape[1], int(options["hidden"]), int(options["latent"]),
                         scores.shape[1], float(options["dropout"]))
        info = train_logits_model(module, x, scores, topts, progress)
        lin1, lin2 = module.mlp[0], module.mlp[3]
        weights = {"w1": lin1.weight.detach().numpy().T, "b1": lin1.bias.detach().numpy(),
                   "w2": lin2.weight.detach().numpy().T, "b2": lin2.bias.detach().numpy(),
                   "model_emb": module.model_emb.detach().numpy(),
                   "bias": module.bias.detach().numpy()}
        return cls(weights, info.pop("temperature"), info)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, E) uncalibrated logits of x (B, D)."""
        w = self.weights
        h = np.maximum(np.asarray(x, np.float32) @ w["w1"] + w["b1"], 0.0)  # (B, H)
        z = h @ w["w2"] + w["b2"]  # (B, L)
        out: np.ndarray = z @ w["model_emb"].T + w["bias"]  # (B, E)
        return out

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return sigmoid(self.logits(x) / self.temperature).astype(np.float64), None

    def config(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "calibration": self.info}

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self.weights)

    @classmethod
    def load(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> MLPMFHead:
        return cls(arrays, float(config["temperature"]), config.get("calibration", {}))


class ImageMLPMFRouter(MultimodalRouter):
    kind = "image-mlpmf"
    head = MLPMFHead
    defaults = MappingProxyType({
        "hidden": 256, "latent": 64, "dropout": 0.1, "epochs": 60, "lr": 1e-3,
        "weight_decay": 1e-4, "batch_size": 64, "val_fraction": 0.1, "patience": 6,
        "seed": 0, "threads": 1,
    })
