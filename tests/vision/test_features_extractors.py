"""The real image feature extractors on a few real MathVision images."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from coe_gateway.vision.features.base import (
    FEATURE_KINDS,
    ImageFeatureExtractor,
    build_extractor,
    feature_dim,
)
from coe_gateway.vision.features.stats import COLUMNS, StatsExtractor

MATHV = Path(__file__).parents[2] / ".." / "shared" / "data" / "mathv"
IMAGES = ("1", "2", "3")


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    if not (MATHV / "images").is_dir():
        pytest.skip("shared/data/mathv is not here")
    return [Image.open(MATHV / "images" / f"{n}.jpg") for n in IMAGES]


@pytest.fixture(scope="module")
def pixels() -> ImageFeatureExtractor:
    return build_extractor("pixels")


@pytest.fixture(scope="module")
def ocr() -> Any:
    return build_extractor("ocr", {"threads": 1})


def text_image(text: str = "AREA = 42 cm") -> Image.Image:
    image = Image.new("RGB", (400, 120), "white")
    ImageDraw.Draw(image).text((20, 40), text, fill="black", font_size=40)
    return image


def test_registry_names_every_kind_and_rejects_unknown() -> None:
    assert set(FEATURE_KINDS) >= {"pixels", "ocr", "stats", "clip"}
    with pytest.raises(ValueError, match="unknown image feature kind 'nope'"):
        build_extractor("nope")
    with pytest.raises(ValueError, match="unknown option"):
        build_extractor("stats", {"colour": 1})


def test_fingerprint_ignores_runtime_options_only() -> None:
    assert build_extractor("ocr", {"threads": 1}).fingerprint() == \
        build_extractor("ocr").fingerprint()
    assert build_extractor("ocr", {"limit_side_len": 640}).fingerprint() != \
        build_extractor("ocr").fingerprint()
    assert build_extractor("pixels").fingerprint().startswith("pixels-")


def test_pixels_dims_unit_norm_deterministic(pixels: ImageFeatureExtractor,
                                             images: list[Image.Image]) -> None:
    batch = pixels.extract(images)
    assert batch.shape == (3, 1280) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    one = pixels.extract(images[1:2])
    np.testing.assert_allclose(one[0], batch[1], atol=1e-5)  # batched == alone
    assert float(batch[0] @ batch[1]) < 0.999  # different images, different vectors
    assert pixels.extract([]).shape == (0, 1280)


def test_stats_columns_and_sanity(images: list[Image.Image]) -> None:
    stats = StatsExtractor()
    assert stats.dim == len(COLUMNS) == len(stats.columns)
    col = {name: i for i, name in enumerate(COLUMNS)}
    blank, text = stats.extract([Image.new("RGB", (640, 480), "white"), text_image()])
    assert blank[col["ink_ratio"]] < 1e-6 and blank[col["white_ratio"]] > 0.999
    assert blank[col["edge_density"]] < 1e-6
    assert text[col["ink_ratio"]] > 0.005 and text[col["edge_density"]] > 0.005
    assert blank[col["log_aspect"]] == pytest.approx(np.log(640 / 480), abs=1e-5)
    real = stats.extract(images)
    assert real.shape == (3, len(COLUMNS)) and np.isfinite(real).all()
    np.testing.assert_array_equal(real, stats.extract(images))


def test_stats_handles_modes() -> None:
    rgba = Image.new("RGBA", (50, 30), (0, 0, 0, 0))  # fully transparent -> white
    gray = Image.new("L", (30, 50), 0)  # black
    out = StatsExtractor().extract([rgba, gray])
    ink = COLUMNS.index("ink_ratio")
    assert out[0, ink] < 1e-6 and out[1, ink] > 0.999
    assert out[1, COLUMNS.index("dark_background")] == 1.0


def test_ocr_reads_text_and_vector_layout(ocr: Any, images: list[Image.Image]) -> None:
    text = ocr.text(text_image("AREA 42"))
    assert "42" in text
    dim = feature_dim("ocr")
    vecs = ocr.extract([images[0], Image.new("RGB", (200, 100), "white")])
    assert vecs.shape == (2, dim) == (2, 384 + 3)
    assert np.linalg.norm(vecs[0, :-3]) == pytest.approx(1.0, abs=1e-4)
    assert vecs[0, -3] > 0 and 0 < vecs[0, -1] <= 1  # boxes and mean score
    np.testing.assert_array_equal(vecs[1], 0.0)  # no text: zeros, box stats zero too
    np.testing.assert_allclose(ocr.extract(images[:1])[0], vecs[0], atol=1e-5)


def test_no_extractor_touches_the_network(monkeypatch: pytest.MonkeyPatch,
                                          images: list[Image.Image]) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access: {args}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    from coe_gateway.routers.embedding import EncoderSpec, SentenceTransformerEncoder

    assert SentenceTransformerEncoder(EncoderSpec()).encode(["a triangle"]).shape == (1, 384)
    for kind, options in (("pixels", None), ("stats", None), ("ocr", {"threads": 1})):
        out = build_extractor(kind, options).extract(images[:1])  # fresh: loads everything
        assert out.shape == (1, feature_dim(kind)), kind
