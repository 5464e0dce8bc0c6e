"""``embedding``: greedy clustering by cosine, with a fake encoder and the real static one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coe_gateway.answers import build_extractor
from coe_gateway.answers.embedding import DEFAULT_THRESHOLD, EmbeddingExtractor, greedy_clusters

# A fake encoder: each text is a fixed 2-d direction (angles in degrees).
ANGLES = {"paris": 0.0, "it is paris": 10.0, "paris, france": 20.0, "berlin": 90.0,
          "the capital is berlin": 95.0, "rome": 180.0}


def fake_encode(texts: list[str]) -> np.ndarray:
    rad = np.radians([ANGLES[t.lower()] for t in texts])
    return np.stack([np.cos(rad), np.sin(rad)], axis=1) * 3.0  # not unit: the extractor scales


class Recorder:
    """Counts encode calls (and their batch sizes)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return fake_encode(texts)


def test_clusters_fake_encoder() -> None:
    ex = EmbeddingExtractor(threshold=0.9, encode=fake_encode)  # cos 10° = 0.985, 20° = 0.94
    assert ex.keys(["Paris", "Berlin", "It is Paris", "the capital is Berlin", "Rome"]) == [
        "cluster-0", "cluster-1", "cluster-0", "cluster-1", "cluster-2"]


def test_joins_the_first_cluster_by_its_representative_fake_encoder() -> None:
    # cos(0°, 20°) = 0.94 < 0.95: "paris, france" does not join "paris"'s cluster even
    # though it is within 0.95 of "it is paris" (the representative is the first member)
    ex = EmbeddingExtractor(threshold=0.95, encode=fake_encode)
    assert ex.keys(["paris", "it is paris", "paris, france"]) == [
        "cluster-0", "cluster-0", "cluster-1"]
    assert ex.keys(["it is paris", "paris", "paris, france"]) == [
        "cluster-0", "cluster-0", "cluster-0"]


def test_empty_and_missing_are_none_fake_encoder() -> None:
    rec = Recorder()
    ex = EmbeddingExtractor(encode=rec)
    assert ex.keys([None, "", "  ", "Paris", "Berlin"]) == [
        None, None, None, "cluster-0", "cluster-1"]
    assert rec.calls == [["Paris", "Berlin"]]  # one batch, only the texts with content
    assert ex.keys([None, " "]) == [None, None]
    assert len(rec.calls) == 1  # nothing to encode: no call


def test_extract_alone_fake_encoder() -> None:
    ex = EmbeddingExtractor(encode=fake_encode)
    assert ex.extract("Paris") == "cluster-0"
    assert ex.extract("   ") is None


def test_zero_vectors_do_not_join_fake_encoder() -> None:
    ex = EmbeddingExtractor(threshold=0.5, encode=lambda t: np.zeros((len(t), 4)))
    assert ex.keys(["a", "b"]) == ["cluster-0", "cluster-1"]


def test_threshold_one_fake_encoder() -> None:
    ex = EmbeddingExtractor(threshold=1.0, encode=fake_encode)
    keys = ex.keys(["Paris", "paris", "It is Paris"])
    assert keys[0] == keys[1] != keys[2]


def test_greedy_clusters_on_unit_vectors() -> None:
    v = np.eye(3, dtype=np.float32)
    assert greedy_clusters(np.concatenate([v, v]), 0.99) == [0, 1, 2, 0, 1, 2]


def test_encoder_is_loaded_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    import coe_gateway.routers.embedding as emb

    calls: list[object] = []

    class FakeEncoder:
        def encode(self, texts: list[str]) -> np.ndarray:
            return fake_encode(texts)

    def fake_get_encoder(spec: object) -> FakeEncoder:
        calls.append(spec)
        return FakeEncoder()

    monkeypatch.setattr(emb, "get_encoder", fake_get_encoder)
    ex = build_extractor("embedding", {"encoder": {"kind": "static", "dim": 64}})
    assert calls == []  # building loads nothing
    assert ex.describe() == {"kind": "embedding", "threshold": DEFAULT_THRESHOLD,
                             "encoder": {"kind": "static", "dim": 64}}
    ex.keys(["Paris", "Berlin"])
    ex.keys(["Rome"])
    assert len(calls) == 1 and getattr(calls[0], "kind") == "static"


def test_describe_injected_fake_encoder() -> None:
    ex = EmbeddingExtractor(threshold=0.8, encode=fake_encode)
    assert ex.describe() == {"kind": "embedding", "threshold": 0.8, "encoder": "injected"}


def _static_available() -> tuple[bool, str]:
    from coe_gateway.routers.embedding import EncoderSpec

    table = EncoderSpec(kind="static").static_dir / "table.safetensors"
    if not table.exists():
        return False, f"the static encoder is not built here ({table} is missing; building " \
                      "it distils MiniLM, minutes)"
    return True, str(Path(table).parent)


def test_static_encoder_separates_paris_and_berlin() -> None:
    ok, why = _static_available()
    if not ok:
        pytest.skip(why)
    from coe_gateway.routers.embedding import get_encoder

    v = get_encoder({"kind": "static"}).encode(["Paris", "The capital is Paris.", "Berlin"])
    similar, different = float(v[0] @ v[1]), float(v[0] @ v[2])
    # measured with the shipped table: 0.778 and 0.475 (see the module's docstring)
    assert similar >= DEFAULT_THRESHOLD > different, (similar, different)
    ex = build_extractor("embedding")
    keys = ex.keys(["Paris", "The capital is Paris.", "Berlin", "paris"])
    assert keys == ["cluster-0", "cluster-0", "cluster-1", "cluster-0"]
