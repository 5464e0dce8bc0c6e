"""Image-aware cross-modal router (MMR-Bench ``cmr``): attention is its fusion.

The text embedding and each image feature block are projected to d (default 512) and become
tokens; a learned modality embedding is added per token; 2 pre-LayerNorm self-attention layers
(8 heads, feed-forward 4d, GELU); mean-pool over the present tokens (a query's image tokens
are masked when its image is absent); a GELU MLP performance head gives one logit per expert.
Trained with masked BCE on the 0/1 scores (MMR-Bench regresses with MSE and uses post-LN;
BCE gives calibrated probabilities and pre-LN trains stably without warm-up), AdamW (weight
decay 1e-4), lr 1e-3, batch 32, up to 100 epochs with early stopping on a train-internal
validation split and a fitted temperature (:func:`coe_gateway.routers.neural.
train_logits_model`). The text head is the same module with the text token alone. The
router ignores ``fusion``: its rows are [t, z_1, ..., z_k, present] (fusion ``tokens``).

Saved arrays per head: the module's state dict, one array per parameter name. Torch is
imported and the module rebuilt on the first ``predict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from coe_gateway.routers.multimodal.base import Head, MultimodalRouter, train_options
from coe_gateway.routers.multimodal.inputs import Progress
from coe_gateway.routers.neural import sigmoid, train_logits_model

ARCH = ("d", "layers", "heads", "dropout", "hidden")


def _module(layout: tuple[int, ...], experts: int, d: int, layers: int, heads: int,
            dropout: float, hidden: int) -> Any:
    import torch
    from torch import nn

    if d % heads:
        raise ValueError(f"image-cmr: d ({d}) must be a multiple of heads ({heads})")

    class CrossModal(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.ModuleList(nn.Linear(w, d) for w in layout)
            self.modality = nn.Parameter(torch.randn(len(layout), d) * 0.02)  # (T, d)
            layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
            self.head = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, experts))

        def forward(self, x: Any) -> Any:  # x (B, sum(layout) [+ 1 present]) -> (B, E)
            parts = torch.split(x[:, :sum(layout)], list(layout), dim=1)  # T x (B, w_j)
            tokens = torch.stack([p(v) for p, v in zip(self.proj, parts)], dim=1)  # (B, T, d)
            tokens = tokens + self.modality  # (B, T, d)
            masked = torch.zeros(tokens.shape[:2], dtype=torch.bool)  # (B, T) True = absent
            if len(layout) > 1:
                masked[:, 1:] = (x[:, -1:] < 0.5).expand(-1, len(layout) - 1)
            h = self.encoder(tokens, src_key_padding_mask=masked)  # (B, T, d)
            keep = (~masked).to(h.dtype)[..., None]  # (B, T, 1)
            pooled = (h * keep).sum(dim=1) / keep.sum(dim=1)  # (B, d)
            return self.head(self.norm(pooled))  # (B, E)

    return CrossModal()


class CMRHead(Head):
    def __init__(self, layout: tuple[int, ...], experts: int, arch: Mapping[str, Any],
                 state: Mapping[str, np.ndarray], temperature: float,
                 info: Mapping[str, Any]) -> None:
        self.layout, self.experts = tuple(int(w) for w in layout), int(experts)
        self.arch = {k: arch[k] for k in ARCH}
        self.state = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
        self.temperature, self.info = float(temperature), dict(info)
        self._module: Any = None

    @classmethod
    def fit(cls, x: np.ndarray, scores: np.ndarray, layout: tuple[int, ...],
            options: Mapping[str, Any], progress: Progress | None = None) -> CMRHead:
        import torch

        topts = train_options(options)
        torch.manual_seed(topts.seed)
        arch = {k: options[k] for k in ARCH}
        module = _module(layout, scores.shape[1], **arch)
        info = train_logits_model(module, x, scores, topts, progress)
        state = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
        return cls(layout, scores.shape[1], arch, state, info.pop("temperature"), info)

    def module(self) -> Any:
        """The torch module with the fitted weights (built on first use)."""
        if self._module is None:
            import torch

            module = _module(self.layout, self.experts, **self.arch)
            module.load_state_dict({k: torch.from_numpy(v) for k, v in self.state.items()})
            self._module = module.eval()
        return self._module

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        with torch.inference_mode():
            logits = self.module()(torch.from_numpy(np.asarray(x, np.float32))).numpy()
        return sigmoid(logits / self.temperature).astype(np.float64), None

    def config(self) -> dict[str, Any]:
        return {"layout": list(self.layout), "experts": self.experts, "arch": self.arch,
                "temperature": self.temperature, "calibration": self.info}

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self.state)

    @classmethod
    def load(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> CMRHead:
        return cls(tuple(config["layout"]), int(config["experts"]), config["arch"], arrays,
                   float(config["temperature"]), config.get("calibration", {}))


class ImageCMRRouter(MultimodalRouter):
    kind = "image-cmr"
    head = CMRHead
    fixed_fusion = "tokens"
    defaults = MappingProxyType({
        "d": 512, "layers": 2, "heads": 8, "dropout": 0.1, "hidden": 512, "epochs": 100,
        "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 32, "val_fraction": 0.1,
        "patience": 6, "seed": 0, "threads": 1,
    })
