"""MLP quality predictor: the query's embedding -> one hidden layer -> per-expert probability of
a good answer (multi-task: all experts share the hidden layer, so what makes a query hard is
learned once). Trained with masked binary cross-entropy and temperature-scaled on a held-out
part of the training data (:mod:`coe_gateway.routers.neural`); prediction is numpy.

Saved arrays: ``w1`` (D, H), ``b1`` (H,), ``w2`` (H, E), ``b2`` (E,); config ``temperature``
and ``calibration`` (ECE on the validation split before and after temperature scaling).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coe_gateway.records import RecordSet
from coe_gateway.routers.common import LogitsRouter, score_matrix, training_inputs
from coe_gateway.routers.embedding import EncoderSpec
from coe_gateway.routers.neural import Progress, train_logits_model


def _module(dim: int, hidden: int, experts: int, dropout: float) -> Any:
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, experts),
    )


class MLPRouter(LogitsRouter):
    kind = "mlp"

    def __init__(
        self, experts: Sequence[str], encoder: Mapping[str, Any] | EncoderSpec | None = None,
        hidden: int = 256, dropout: float = 0.2, temperature: float = 1.0,
        calibration: Mapping[str, Any] | None = None,
        w1: np.ndarray | None = None, b1: np.ndarray | None = None,
        w2: np.ndarray | None = None, b2: np.ndarray | None = None,
    ) -> None:
        super().__init__(experts, encoder)
        if w1 is None or b1 is None or w2 is None or b2 is None:
            raise ValueError("mlp: needs trained weights w1, b1, w2, b2 (use fit)")
        if w2.shape[1] != len(self.experts) or w1.shape[1] != w2.shape[0]:
            raise ValueError(f"mlp: weights {w1.shape}/{w2.shape} do not match "
                             f"{len(self.experts)} experts")
        self.hidden, self.dropout = int(hidden), float(dropout)
        self.temperature = float(temperature)
        self.calibration = dict(calibration or {})
        self.w1, self.b1 = np.asarray(w1, np.float32), np.asarray(b1, np.float32)
        self.w2, self.b2 = np.asarray(w2, np.float32), np.asarray(b2, np.float32)

    @classmethod
    def fit(cls, train: RecordSet, experts: Sequence[str] | None = None,
            progress: Progress | None = None, **options: Any) -> MLPRouter:
        """Train on the records' embeddings and scores (options: hidden, dropout, encoder and
        :class:`~coe_gateway.routers.neural.TrainOptions` fields)."""
        opts, topts, names, x = training_inputs(train, experts, options)
        hidden, dropout = int(opts.pop("hidden", 256)), float(opts.pop("dropout", 0.2))
        module = _module(x.shape[1], hidden, len(names), dropout)
        info = train_logits_model(module, x, score_matrix(train, names), topts, progress)
        lin1, lin2 = module[0], module[3]
        return cls(
            names, hidden=hidden, dropout=dropout, temperature=info.pop("temperature"),
            calibration=info, w1=lin1.weight.detach().numpy().T, b1=lin1.bias.detach().numpy(),
            w2=lin2.weight.detach().numpy().T, b2=lin2.bias.detach().numpy(), **opts)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, E) uncalibrated logits of embeddings x (B, D)."""
        h = np.maximum(x @ self.w1 + self.b1, 0.0)  # (B, H)
        out: np.ndarray = h @ self.w2 + self.b2  # (B, E)
        return out

    def config(self) -> dict[str, Any]:
        return {**super().config(), "hidden": self.hidden, "dropout": self.dropout,
                "temperature": self.temperature, "calibration": self.calibration}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"w1": self.w1, "b1": self.b1, "w2": self.w2, "b2": self.b2}
