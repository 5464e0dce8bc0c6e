"""``clip``: a CLIP-family image encoder from a local directory (L2-normalised embeddings).

No CLIP weights ship on PyPI, so this kind needs ``path``: a directory saved with
``save_pretrained`` holding a ``CLIPVisionModelWithProjection`` or a whole ``CLIPModel`` and
its image processor. It is loaded with ``local_files_only=True`` (never downloaded).
Options: ``path`` (required), ``device`` ("cpu"; "cuda" on a GPU machine), ``batch_size`` (16).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from coe_gateway.vision.features.base import ImageFeatureExtractor, as_rgb


class CLIPExtractor(ImageFeatureExtractor):
    """Image embeddings of a local CLIP vision tower with its projection."""

    kind: ClassVar[str] = "clip"
    DEFAULTS: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {"path": None, "device": "cpu", "batch_size": 16})
    RUNTIME_OPTIONS: ClassVar[frozenset[str]] = frozenset({"device", "batch_size"})

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        if not self.options["path"]:
            raise ValueError("image feature kind 'clip': option 'path' is required "
                             "(a local directory with a CLIP model and its image processor)")
        self.path = Path(str(self.options["path"])).expanduser()
        if not self.path.is_dir():
            raise ValueError(f"image feature kind 'clip': option 'path': {self.path} is not "
                             "a directory")
        self._model: Any = None
        self._processor: Any = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        from transformers import CLIPVisionConfig

        config = CLIPVisionConfig.from_pretrained(str(self.path), local_files_only=True)
        return int(config.projection_dim)

    def weights_id(self) -> str:
        files = sorted(p for p in self.path.iterdir() if p.suffix in (".safetensors", ".bin"))
        return ",".join(f"{p.name}:{p.stat().st_size}" for p in files) + f"@{self.path.resolve()}"

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from transformers import AutoImageProcessor, CLIPVisionModelWithProjection

                model: Any = CLIPVisionModelWithProjection.from_pretrained(
                    str(self.path), local_files_only=True)
                load_processor: Any = AutoImageProcessor.from_pretrained
                self._processor = load_processor(str(self.path), local_files_only=True)
                self._model = model.eval().to(self.options["device"])
        return self._model, self._processor

    def extract(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        out = np.zeros((len(images), self.dim), dtype=np.float32)  # (B, P)
        if not images:
            return out
        model, processor = self._load()
        step = int(self.options["batch_size"])
        with torch.inference_mode():
            for start in range(0, len(images), step):
                chunk = [as_rgb(im) for im in images[start:start + step]]
                pixels = processor(images=chunk, return_tensors="pt")["pixel_values"]
                embeds = model(pixel_values=pixels.to(self.options["device"])).image_embeds
                unit = torch.nn.functional.normalize(embeds.float(), dim=-1)  # (b, P)
                out[start:start + len(chunk)] = unit.cpu().numpy()
        return out
