"""``ocr``: the text in an image (RapidOCR, PP-OCR ONNX models) embedded with the text encoder.

Vector = the recognised lines joined in reading order (RapidOCR sorts boxes top to bottom,
left to right) embedded with the project's text encoder (default all-MiniLM-L6-v2, 384-d unit
vector; no text -> zeros), followed by 3 box statistics: ``log1p(boxes)``,
``log1p(characters)`` and the mean recognition score (0 without boxes).

The ONNX models are the ones inside the ``rapidocr`` wheel, passed by explicit path so that
RapidOCR never tries its download routes. Detection resizes the longer side to at most
``limit_side_len`` (PaddleOCR's default 960; RapidOCR's own default scales the *shorter* side
up to 736, which turns a 1176x178 strip into a 4864x736 image and costs 10x the time here),
and the 180-degree line classifier is off by default (diagrams are upright).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from coe_gateway.vision.features.base import ImageFeatureExtractor, as_rgb

MODEL_FILES = {"Det": "PP-OCRv6_det_small.onnx", "Rec": "PP-OCRv6_rec_small.onnx",
               "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx"}
N_BOX_STATS = 3


@dataclass(frozen=True)
class OCRText:
    """What OCR read in one image."""

    text: str
    lines: tuple[str, ...]
    scores: tuple[float, ...]

    @property
    def characters(self) -> int:
        return sum(len(line) for line in self.lines)

    def box_stats(self) -> np.ndarray:
        """``(3,)``: log1p(boxes), log1p(characters), mean recognition score."""
        mean = float(np.mean(self.scores)) if self.scores else 0.0
        return np.array([math.log1p(len(self.lines)), math.log1p(self.characters), mean],
                        dtype=np.float32)


def model_dir() -> Path:
    """The ONNX models inside the installed ``rapidocr`` wheel."""
    import rapidocr

    return Path(rapidocr.__file__).resolve().parent / "models"


class OCRExtractor(ImageFeatureExtractor):
    """RapidOCR text through the text encoder, plus box statistics.

    Options: ``limit_side_len`` (960), ``use_cls`` (False), ``text_score`` (0.5, minimum
    recognition score of a kept line), ``max_chars`` (2000, text cut before embedding),
    ``encoder`` (the text encoder spec; None = the default MiniLM), ``threads`` (onnxruntime
    intra-op threads; -1 = its default, all cores).
    """

    kind: ClassVar[str] = "ocr"
    DEFAULTS: ClassVar[Mapping[str, Any]] = MappingProxyType({
        "limit_side_len": 960, "use_cls": False, "text_score": 0.5, "max_chars": 2000,
        "encoder": None, "threads": -1})
    RUNTIME_OPTIONS: ClassVar[frozenset[str]] = frozenset({"threads"})

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._engine: Any = None
        self._lock = threading.Lock()  # RapidOCR keeps per-call state: one call at a time

    def _encoder(self) -> Any:
        from coe_gateway.routers.embedding import get_encoder

        return get_encoder(self.options["encoder"])

    @property
    def dim(self) -> int:
        return int(self._encoder().dim) + N_BOX_STATS

    def weights_id(self) -> str:
        files = ",".join(f"{name}:{(model_dir() / name).stat().st_size}"
                         for name in MODEL_FILES.values())
        return f"{files};{encoder_identity(self.options['encoder'])}"

    def _params(self) -> dict[str, Any]:
        threads = int(self.options["threads"])
        params: dict[str, Any] = {
            "Global.log_level": "warning",
            "Global.use_cls": bool(self.options["use_cls"]),
            "Global.text_score": float(self.options["text_score"]),
            "Det.limit_type": "max",
            "Det.limit_side_len": int(self.options["limit_side_len"]),
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1 if threads > 0 else -1,
        }
        for stage, name in MODEL_FILES.items():
            params[f"{stage}.model_path"] = str(model_dir() / name)
        return params

    def _load(self) -> Any:
        if self._engine is None:
            from rapidocr import RapidOCR

            self._engine = RapidOCR(params=self._params())
        return self._engine

    def read(self, images: Sequence[Image.Image]) -> list[OCRText]:
        """The text of each image (lines in reading order and their scores)."""
        out = []
        with self._lock:
            engine = self._load()
            for image in images:
                result = engine(as_rgb(image))
                lines = tuple(str(t) for t in (result.txts or ()))
                scores = tuple(float(s) for s in (result.scores or ()))
                out.append(OCRText(" ".join(lines), lines, scores))
        return out

    def text(self, image: Image.Image) -> str:
        """The recognised text of one image (lines joined by spaces; "" when none)."""
        return self.read([image])[0].text

    def vectors(self, texts: Sequence[OCRText]) -> np.ndarray:
        """``(B, dim)``: embedded text (zeros where empty) + box statistics."""
        encoder = self._encoder()
        width = int(encoder.dim)
        out = np.zeros((len(texts), width + N_BOX_STATS), dtype=np.float32)  # (B, D+3)
        filled = [i for i, t in enumerate(texts) if t.text.strip()]
        if filled:
            cut = int(self.options["max_chars"])
            out[filled, :width] = encoder.encode([texts[i].text[:cut] for i in filled])
        for i, t in enumerate(texts):
            out[i, width:] = t.box_stats()
        return out

    def extract(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.vectors(self.read(images))


def encoder_identity(encoder: Mapping[str, Any] | None) -> str:
    """What identifies the text encoder's vectors, independent of where it is installed (a
    store made in one checkout is valid in another): a static encoder's checksum, or a
    sentence-transformers model's file names and sizes and its sequence length."""
    from coe_gateway.routers.embedding import EncoderSpec

    spec = EncoderSpec.from_config(encoder)
    if spec.kind == "static":
        return spec.fingerprint()
    root = spec.model_dir
    files = sorted(f"{f.relative_to(root)}:{f.stat().st_size}" for f in root.rglob("*")
                   if f.is_file() and not any(part.startswith((".", "__")) for part in
                                                    f.relative_to(root).parts))
    return f"st:{','.join(files)}:{spec.max_seq_length}"
