"""The Router contract: a router predicts, a policy decides.

``Router.predict(queries) -> Prediction`` gives, for each query and each expert the router
knows, the expected quality of that expert's answer (0..1) and a confidence in that estimate
(0..1). It never chooses: :mod:`coe_gateway.policies` does, from the prediction, the cost
estimates and the budget state. The same objects serve the gateway and the offline evaluator.

Routers are trained from routing records (:mod:`coe_gateway.records`) and saved to a
directory as ``router.json`` (kind, experts, hyper-parameters) plus ``weights.safetensors``
(arrays); never pickle. ``load`` is cheap: heavy state (torch, encoders) is created on the
first ``predict``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Query:
    """What a router sees of one request.

    ``text`` is the conversation flattened for routing (see ``protocol.routing_text``);
    ``category`` is a known label where the caller or data set gives one; ``image`` a file path
    or URL of an attached image; ``image_features`` the image's features computed before the
    router (by :mod:`coe_gateway.vision.features`): ``{kind: (D,) float32}``, one vector per
    feature kind (the mean over the request's images), None when the request has no image or
    nothing computed them (a router then reads ``image`` itself, or routes on the text);
    ``metadata`` anything else (tenant, requested max_tokens, ...).
    """

    text: str
    category: str | None = None
    image: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    image_features: Mapping[str, np.ndarray] | None = None


@dataclass(frozen=True)
class Prediction:
    """Per-query, per-expert predicted quality and confidence.

    quality:    (B, E) float, expected quality of expert e's answer to query b, in 0..1
    confidence: (B, E) float, in 0..1 (1 = the router is sure of that estimate)
    experts:    E names, the column order
    """

    experts: tuple[str, ...]
    quality: np.ndarray
    confidence: np.ndarray

    def __post_init__(self) -> None:
        b_e = (self.quality.shape[0], len(self.experts)) if self.quality.ndim == 2 else None
        if b_e is None or self.quality.shape != b_e or self.confidence.shape != b_e:
            raise ValueError(
                f"prediction shapes {self.quality.shape}/{self.confidence.shape} do not match "
                f"{len(self.experts)} experts"
            )

    def __len__(self) -> int:
        return int(self.quality.shape[0])

    def select(self, experts: Sequence[str]) -> Prediction:
        """The columns of ``experts``, in that order (KeyError for an unknown one)."""
        index = {e: i for i, e in enumerate(self.experts)}
        cols = [index[e] for e in experts]
        return Prediction(tuple(experts), self.quality[:, cols], self.confidence[:, cols])

    def row(self, i: int) -> dict[str, dict[str, float]]:
        """One query's prediction as ``{expert: {"quality", "confidence"}}`` (for logs, headers)."""
        return {
            e: {"quality": round(float(self.quality[i, j]), 4),
                "confidence": round(float(self.confidence[i, j]), 4)}
            for j, e in enumerate(self.experts)
        }


class Router(ABC):
    """Predicts each expert's quality for a batch of queries. Subclasses register a ``kind``."""

    kind: ClassVar[str] = ""
    #: True when ``predict`` is cheap enough to run on the event loop (no model, no I/O).
    cheap: ClassVar[bool] = False

    def __init__(self, experts: Sequence[str]) -> None:
        if not experts:
            raise ValueError("a router needs at least one expert")
        self.experts: tuple[str, ...] = tuple(experts)

    @abstractmethod
    def predict(self, queries: Sequence[Query]) -> Prediction:
        """Predicted quality (B, E) and confidence (B, E) for ``queries``."""

    @property
    def image_kinds(self) -> tuple[str, ...]:
        """The image feature kinds this router reads (:mod:`coe_gateway.vision.features`):
        the gateway computes them before ``predict`` for a request with images. None here."""
        return ()

    @property
    def image_feature_options(self) -> Mapping[str, Mapping[str, Any]]:
        """Per-kind extractor options for :attr:`image_kinds` (as the router was trained)."""
        return {}

    # -- persistence ---------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-serialisable hyper-parameters written to ``router.json`` (besides kind, experts)."""
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays written to ``weights.safetensors``."""
        return {}

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "experts": list(self.experts), "config": self.config()}
        (d / "router.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        arrays = self.arrays()
        if arrays:
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                      str(d / "weights.safetensors"))
        return d

    @classmethod
    def from_saved(
        cls, experts: Sequence[str], config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> Router:
        """Rebuild from what ``save`` wrote; subclasses with state override this."""
        return cls(experts, **config)


def read_saved(directory: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``router.json`` and the safetensors arrays of a saved router directory."""
    d = Path(directory)
    meta = json.loads((d / "router.json").read_text(encoding="utf-8"))
    weights = d / "weights.safetensors"
    arrays: dict[str, np.ndarray] = {}
    if weights.exists():
        from safetensors.numpy import load_file

        arrays = load_file(str(weights))
    return meta, arrays
