"""Feature stores on disk and image_features_for_paths through them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coe_gateway.vision.features.base import build_extractor
from coe_gateway.vision.features.featurizer import image_features_for_paths, sha256
from coe_gateway.vision.features.store import SHIPPED_ROOT, FeatureStore, read_store, user_root

MATHV = Path(__file__).parents[2] / ".." / "shared" / "data" / "mathv"


@pytest.fixture(autouse=True)
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COE_GATEWAY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_store_round_trip_and_merge(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = FeatureStore(tmp_path / "stats-abc.safetensors", "stats", 4)
    a.add(["k1", "k2"], rng.normal(size=(2, 4)))
    a.save()
    back = FeatureStore(tmp_path / "stats-abc.safetensors")
    assert sorted(back.keys()) == ["k1", "k2"] and "k1" in back and "zz" not in back
    np.testing.assert_array_equal(back.get("k2"), a.get("k2"))
    assert back.get("k2") is not None and back.get("k2").dtype == np.float16  # type: ignore[union-attr]
    other = FeatureStore(tmp_path / "o" / "stats-abc.safetensors", "stats", 4)
    other.add(["k2", "k3"], np.ones((2, 4)))
    back.merge(other)
    back.save()
    rows = read_store(tmp_path / "stats-abc.safetensors")
    assert sorted(rows) == ["k1", "k2", "k3"]
    np.testing.assert_array_equal(rows["k2"], a.get("k2"))  # merge keeps what it had
    with pytest.raises(ValueError, match="other fingerprint"):
        back.merge(FeatureStore(tmp_path / "pixels-x.safetensors"))
    with pytest.raises(ValueError, match="2 keys for 1 vectors"):
        back.add(["a", "b"], np.ones((1, 4)))


def test_save_keeps_rows_another_writer_added(tmp_path: Path) -> None:
    path = tmp_path / "stats-abc.safetensors"
    first, second = FeatureStore(path, "stats", 2), FeatureStore(path, "stats", 2)
    first.add(["a"], np.ones((1, 2)))
    second.add(["b"], np.zeros((1, 2)))
    first.save()
    second.save()
    assert sorted(read_store(path)) == ["a", "b"]
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temporary file left


def write_image(path: Path, colour: str) -> str:
    Image.new("RGB", (64, 48), colour).save(path)
    return str(path)


def test_paths_none_missing_unreadable_and_user_store(tmp_path: Path) -> None:
    good = write_image(tmp_path / "a.png", "white")
    broken = tmp_path / "b.png"
    broken.write_bytes(b"not an image")
    paths = [good, None, str(tmp_path / "missing.png"), str(broken), good]
    batch = image_features_for_paths(paths, ["stats"])
    assert batch.present.tolist() == [True, False, False, False, True]
    assert batch.features["stats"].shape == (5, 16)
    np.testing.assert_array_equal(batch.features["stats"][1:4], 0.0)
    assert batch.features["stats"][0, 0] == pytest.approx(np.log(64), abs=1e-2)
    store = user_root() / f"{build_extractor('stats').fingerprint()}.safetensors"
    assert list(read_store(store)) == [sha256(Path(good).read_bytes())]
    calls: list[tuple[int, int]] = []
    again = image_features_for_paths(paths, ["stats"], progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)]  # only the unreadable file is tried again
    assert again.present.tolist() == batch.present.tolist()
    np.testing.assert_allclose(again.features["stats"], batch.features["stats"])


def shipped_paths(n: int) -> list[str]:
    if not (MATHV / "records.jsonl.gz").exists():
        pytest.skip("shared/data/mathv is not here")
    with gzip.open(MATHV / "records.jsonl.gz", "rt") as fh:
        return [str(MATHV / json.loads(next(fh))["image"]) for _ in range(n)]


def test_shipped_stores_cover_mathv_and_agree_with_fresh_extraction() -> None:
    paths = shipped_paths(3)
    kinds = ["pixels", "ocr", "stats"]
    options = {"ocr": {"threads": 1}}
    every = {sha256(p.read_bytes()) for p in (MATHV / "images").glob("*.jpg")}
    assert len(every) > 3000  # 3,040 records, a few images byte-identical
    for kind in kinds:
        name = f"{build_extractor(kind).fingerprint()}.safetensors"
        assert set(read_store(SHIPPED_ROOT / "mathv" / name)) == every, name
    batch = image_features_for_paths(paths, kinds, options)
    assert batch.present.all()
    assert not user_root().exists()  # nothing computed: all came from the shipped stores
    images = [Image.open(p) for p in paths]
    for kind in kinds:
        fresh = build_extractor(kind, options.get(kind)).extract(images)
        np.testing.assert_allclose(batch.features[kind], fresh, rtol=2e-3, atol=2e-3,
                                   err_msg=kind)
