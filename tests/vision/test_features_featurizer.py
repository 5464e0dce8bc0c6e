"""The serving featurizer: mean over images, LRU by image SHA-256, async path."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from coe_gateway.vision.features.featurizer import ImageFeaturizer
from coe_gateway.vision.features.stats import COLUMNS


def png(colour: str, size: tuple[int, int] = (80, 60)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def counting(featurizer: ImageFeaturizer, kind: str) -> list[int]:
    """Wrap the extractor of ``kind``: the list gets the batch size of every call."""
    extractor = featurizer.extractors[kind]
    real = extractor.extract
    calls: list[int] = []

    def wrapped(images: Sequence[Image.Image]) -> np.ndarray:
        calls.append(len(images))
        return real(images)

    extractor.extract = wrapped  # type: ignore[method-assign]
    return calls


def test_mean_over_images_and_lru_skips_the_extractor() -> None:
    featurizer = ImageFeaturizer(["stats"], cache_size=8)
    calls = counting(featurizer, "stats")
    white, black = png("white"), png("black")
    out = featurizer.extract([white, black])
    assert out["stats"].shape == (len(COLUMNS),) and out["stats"].dtype == np.float32
    assert out["stats"][COLUMNS.index("ink_ratio")] == pytest.approx(0.5)
    assert calls == [2]
    again = featurizer.extract([black, white])
    np.testing.assert_array_equal(again["stats"], out["stats"])
    assert calls == [2]  # both cached: the extractor is not called
    featurizer.extract([white, png("red")])
    assert calls == [2, 1]  # only the new image


def test_lru_evicts_the_oldest() -> None:
    featurizer = ImageFeaturizer(["stats"], cache_size=2)
    calls = counting(featurizer, "stats")
    a, b, c = png("white"), png("black"), png("blue")
    for data in (a, b, c):
        featurizer.extract([data])
    featurizer.extract([c])
    featurizer.extract([a])  # evicted by c
    assert calls == [1, 1, 1, 1]


def test_errors_name_the_problem() -> None:
    featurizer = ImageFeaturizer(["stats"])
    with pytest.raises(ValueError, match="no images"):
        featurizer.extract([])
    with pytest.raises(ValueError, match="image 1: cannot decode"):
        featurizer.extract([png("white"), b"garbage"])
    with pytest.raises(ValueError, match="at least one feature kind"):
        ImageFeaturizer([])


async def test_async_path_matches_sync_and_runs_off_the_loop() -> None:
    import threading

    featurizer = ImageFeaturizer(["stats", "pixels"])
    threads: list[str] = []
    real = featurizer.extractors["stats"].extract

    def spy(images: Sequence[Image.Image]) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return real(images)

    featurizer.extractors["stats"].extract = spy  # type: ignore[method-assign]
    images = [png("white", (300, 200)), png("green")]
    out = await featurizer.aextract(images)
    assert threads and threads[0].startswith("image-features")
    assert out["pixels"].shape == (1280,) and out["stats"].shape == (len(COLUMNS),)
    sync = featurizer.extract(images)  # from the LRU now
    for kind in out:
        np.testing.assert_array_equal(out[kind], sync[kind])
    featurizer.close()
