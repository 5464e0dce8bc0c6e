"""Matrix-factorisation quality predictor (RouteLLM's MF router, generalised to N models).

RouteLLM scores a (query, model) pair by ``w . (v_m * (W x_q))``: a learned model embedding
``v_m`` times a projection of the query's text embedding. Here, with one output per expert::

    logit(q, m) = <v_m, P x_q> + b_m + <u, x_q>

``P`` (D, k) projects the query into the k-dimensional latent space the model embeddings
``v_m`` (E, k) live in; ``b_m`` is the model's overall strength and ``<u, x_q>`` the query's
difficulty, shared by every model. Trained with masked binary cross-entropy and a temperature
(:mod:`coe_gateway.routers.neural`); prediction is numpy.

Saved arrays: ``proj`` (D, k), ``model_emb`` (E, k), ``bias`` (E,), ``difficulty`` (D,).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coe_gateway.records import RecordSet
from coe_gateway.routers.common import LogitsRouter, score_matrix, training_inputs
from coe_gateway.routers.embedding import EncoderSpec
from coe_gateway.routers.neural import Progress, train_logits_model


def _module(dim: int, rank: int, experts: int) -> Any:
    import torch

    class MF(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(dim, rank, bias=False)
            self.model_emb = torch.nn.Parameter(torch.randn(experts, rank) * 0.1)
            self.bias = torch.nn.Parameter(torch.zeros(experts))
            self.difficulty = torch.nn.Linear(dim, 1, bias=False)

        def forward(self, x: Any) -> Any:  # x (B, D) -> (B, E)
            return self.proj(x) @ self.model_emb.T + self.bias + self.difficulty(x)

    return MF()


class MFRouter(LogitsRouter):
    kind = "mf"

    def __init__(
        self, experts: Sequence[str], encoder: Mapping[str, Any] | EncoderSpec | None = None,
        rank: int = 64, temperature: float = 1.0, calibration: Mapping[str, Any] | None = None,
        proj: np.ndarray | None = None, model_emb: np.ndarray | None = None,
        bias: np.ndarray | None = None, difficulty: np.ndarray | None = None,
    ) -> None:
        super().__init__(experts, encoder)
        if proj is None or model_emb is None or bias is None or difficulty is None:
            raise ValueError("mf: needs trained arrays proj, model_emb, bias, difficulty (use fit)")
        if model_emb.shape != (len(self.experts), proj.shape[1]):
            raise ValueError(f"mf: model_emb {model_emb.shape} does not match "
                             f"{len(self.experts)} experts x rank {proj.shape[1]}")
        self.rank, self.temperature = int(rank), float(temperature)
        self.calibration = dict(calibration or {})
        self.proj, self.model_emb = np.asarray(proj, np.float32), np.asarray(model_emb, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.difficulty = np.asarray(difficulty, np.float32).reshape(-1)

    @classmethod
    def fit(cls, train: RecordSet, experts: Sequence[str] | None = None,
            progress: Progress | None = None, **options: Any) -> MFRouter:
        """Train on the records' embeddings and scores (options: rank, encoder and
        :class:`~coe_gateway.routers.neural.TrainOptions` fields)."""
        opts, topts, names, x = training_inputs(train, experts, options)
        rank = int(opts.pop("rank", 64))
        module = _module(x.shape[1], rank, len(names))
        info = train_logits_model(module, x, score_matrix(train, names), topts, progress)
        return cls(
            names, rank=rank, temperature=info.pop("temperature"), calibration=info,
            proj=module.proj.weight.detach().numpy().T,
            model_emb=module.model_emb.detach().numpy(), bias=module.bias.detach().numpy(),
            difficulty=module.difficulty.weight.detach().numpy()[0], **opts)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, E) uncalibrated logits of embeddings x (B, D)."""
        return (x @ self.proj) @ self.model_emb.T + self.bias + (x @ self.difficulty)[:, None]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "rank": self.rank, "temperature": self.temperature,
                "calibration": self.calibration}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"proj": self.proj, "model_emb": self.model_emb, "bias": self.bias,
                "difficulty": self.difficulty}
