"""The image feature extractor interface and the registry of extractor kinds.

An extractor turns a batch of decoded images into one float32 vector per image. Kinds are
looked up by name in :data:`FEATURE_KINDS` (``"module:Class"``, imported lazily, so torch,
onnxruntime or transformers load only when a kind is used). Options are validated against
the class's ``DEFAULTS``; the ones listed in ``RUNTIME_OPTIONS`` (threads, device, batch
size) do not change the vectors and stay out of the :meth:`fingerprint` that keys the stores.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
from PIL import Image

FEATURE_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "pixels": "coe_gateway.vision.features.pixels:PixelsExtractor",
        "ocr": "coe_gateway.vision.features.ocr:OCRExtractor",
        "stats": "coe_gateway.vision.features.stats:StatsExtractor",
        "clip": "coe_gateway.vision.features.clip:CLIPExtractor",
    }
)


class ImageFeatureExtractor(ABC):
    """Images -> ``(B, dim)`` float32 vectors. Heavy state is loaded on the first extract."""

    kind: ClassVar[str]
    version: ClassVar[int] = 1  # bump when the vectors of the same options change
    DEFAULTS: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    RUNTIME_OPTIONS: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        given = dict(options or {})
        unknown = sorted(set(given) - set(self.DEFAULTS))
        if unknown:
            raise ValueError(f"image feature kind {self.kind!r}: unknown option(s) {unknown}; "
                             f"known: {sorted(self.DEFAULTS)}")
        self.options: dict[str, Any] = {**self.DEFAULTS, **given}

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of one vector."""

    def weights_id(self) -> str:
        """What identifies the weights the vectors come from (none for hand-made features)."""
        return ""

    def fingerprint(self) -> str:
        """``<kind>-<12 hex>``: a stable id of kind, version, weights and the options that
        change the vectors; the name of the stores that hold this extractor's vectors."""
        keyed = {k: v for k, v in sorted(self.options.items()) if k not in self.RUNTIME_OPTIONS}
        blob = json.dumps([self.kind, self.version, self.weights_id(), keyed],
                          sort_keys=True, default=str)
        return f"{self.kind}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    @abstractmethod
    def extract(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(B, dim)`` float32 vectors of ``images`` (B may be 0)."""


def extractor_class(kind: str) -> type[ImageFeatureExtractor]:
    """The class registered under ``kind`` (ValueError naming the known kinds)."""
    try:
        target = FEATURE_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown image feature kind {kind!r}; known: "
                         f"{sorted(FEATURE_KINDS)}") from None
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, ImageFeatureExtractor)):
        raise TypeError(f"{target} is not an ImageFeatureExtractor")
    return cls


def build_extractor(kind: str, options: Mapping[str, Any] | None = None) -> ImageFeatureExtractor:
    """A new extractor of ``kind`` with ``options`` (nothing heavy is loaded yet)."""
    return extractor_class(kind)(options)


def feature_dim(kind: str, options: Mapping[str, Any] | None = None) -> int:
    """The vector length of ``kind`` with ``options``."""
    return build_extractor(kind, options).dim


def as_rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB; transparent areas composited on white (diagrams are drawn on white)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
