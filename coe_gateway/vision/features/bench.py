"""``coe-gateway bench features``: latency of image decoding and of each feature extractor.

Inputs are 1024x768 JPEGs: real MathVision images resized to that size, plus one synthetic
diagram (text, axes, shapes). Each step is timed per image, ``repeat`` times, after one
warm-up: decode (bytes -> PIL), each extractor alone on one decoded image, the serving path
without OCR (:class:`ImageFeaturizer` over ``pixels`` + ``stats`` with no LRU: SHA-256,
decode, both extractors) and OCR on its own. Threads: whatever torch and onnxruntime use by
default (all cores) unless the caller set them.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from coe_gateway.vision.features.base import build_extractor
from coe_gateway.vision.features.featurizer import ImageFeaturizer, decode

SIZE = (1024, 768)
TARGET_MS = 60.0


def mathv_images() -> Path:
    """``$COE_SHARED_DATA/mathv/images`` (default: the ``shared/data`` next to the repo)."""
    data = os.environ.get("COE_SHARED_DATA", Path(__file__).resolve().parents[4] / "shared"
                          / "data")
    return Path(data) / "mathv" / "images"


def jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").resize(SIZE, Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def synthetic() -> Image.Image:
    """A 1024x768 diagram: a title, axes with ticks, a polygon and a circle, labels."""
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    draw.text((40, 20), "Find the area of the shaded triangle ABC if AB = 7 cm", fill="black")
    draw.line([(100, 700), (950, 700)], fill="black", width=3)
    draw.line([(100, 700), (100, 80)], fill="black", width=3)
    for x in range(100, 951, 85):
        draw.line([(x, 700), (x, 712)], fill="black", width=2)
        draw.text((x - 5, 720), str((x - 100) // 85), fill="black")
    draw.polygon([(200, 650), (600, 650), (420, 250)], fill=(180, 200, 255), outline="black")
    draw.ellipse([(650, 200), (900, 450)], outline=(200, 0, 0), width=4)
    for name, xy in (("A", (185, 655)), ("B", (605, 655)), ("C", (420, 230))):
        draw.text(xy, name, fill="black")
    return image


def bench_images(n: int, folder: Path | None = None) -> list[bytes]:
    """``n`` real images (when the data are there) and the synthetic one, as 1024x768 JPEG."""
    folder = folder or mathv_images()
    files = sorted(folder.glob("*.jpg"), key=lambda p: p.stem)[:n] if folder.is_dir() else []
    return [jpeg(Image.open(p)) for p in files] + [jpeg(synthetic())]


def timings(fn: Callable[[bytes], object], inputs: list[bytes], repeat: int) -> np.ndarray:
    """Milliseconds of ``fn`` per call, over ``repeat`` rounds of all inputs (one warm-up)."""
    fn(inputs[0])
    out = []
    for _ in range(repeat):
        for data in inputs:
            start = time.perf_counter()
            fn(data)
            out.append((time.perf_counter() - start) * 1000.0)
    return np.asarray(out)


def bench_features(images: int = 4, repeat: int = 5,
                   ocr_repeat: int = 2) -> list[dict[str, float | str]]:
    """Rows ``{"step", "n", "p50_ms", "p99_ms", "mean_ms"}`` for every step."""
    inputs = bench_images(images)
    decoded = {data: decode(data) for data in inputs}
    pixels, stats, ocr = (build_extractor(k) for k in ("pixels", "stats", "ocr"))
    serving = ImageFeaturizer(["pixels", "stats"], cache_size=0)
    steps: list[tuple[str, Callable[[bytes], object], int]] = [
        ("decode", decode, repeat),
        ("stats", lambda d: stats.extract([decoded[d]]), repeat),
        ("pixels", lambda d: pixels.extract([decoded[d]]), repeat),
        ("serving: decode+pixels+stats", lambda d: serving.extract([d]), repeat),
        ("ocr (text + embedding)", lambda d: ocr.extract([decoded[d]]), ocr_repeat),
    ]
    rows: list[dict[str, float | str]] = []
    for name, fn, rounds in steps:
        ms = timings(fn, inputs, rounds)
        rows.append({"step": name, "n": float(len(ms)), "p50_ms": float(np.percentile(ms, 50)),
                     "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())})
    serving.close()
    return rows


def verdict(rows: list[dict[str, float | str]]) -> str:
    """One line: the serving path's p50 against the target."""
    row = next(r for r in rows if str(r["step"]).startswith("serving"))
    p50 = float(row["p50_ms"])
    ok = "meets" if p50 <= TARGET_MS else "misses"
    return (f"serving path without OCR: p50 {p50:.1f} ms {ok} the target p50 <= "
            f"{TARGET_MS:.0f} ms on 2 cores")
