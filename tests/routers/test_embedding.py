from __future__ import annotations

import os

import numpy as np
import pytest

from coe_gateway.routers.embedding import (EmbeddingCache, EncoderSpec, embed_texts,
                                           get_encoder)


def test_spec_rejects_unknown_field_and_kind() -> None:
    with pytest.raises(ValueError, match="unknown field"):
        EncoderSpec.from_config({"kind": "static", "dimension": 3})
    with pytest.raises(ValueError, match="encoder.kind"):
        EncoderSpec.from_config({"kind": "word2vec"})


def test_spec_config_keeps_only_what_differs() -> None:
    spec = EncoderSpec.from_config({"kind": "static", "dim": 64})
    assert spec.to_config() == {"kind": "static", "dim": 64}
    assert EncoderSpec.from_config(spec.to_config()) == spec


def test_static_encoder_unit_vectors_and_similarity(encoder: dict) -> None:
    enc = get_encoder(encoder)
    x = enc.encode(["What is the capital of France?", "What is the capital of France?",
                    "Solve for x: 2x + 3 = 7.", ""])
    assert x.shape == (4, 64)
    assert np.allclose(np.linalg.norm(x[:3], axis=1), 1.0, atol=1e-5)
    assert np.allclose(x[0], x[1])
    assert not x[3].any()  # an empty text has no tokens: a zero vector
    assert get_encoder(encoder) is enc  # shared per spec


def test_disk_cache_serves_second_call(encoder: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"question number {i} about the sea" for i in range(20)]
    first = embed_texts(texts, encoder)
    spec = EncoderSpec.from_config(encoder)
    cache = EmbeddingCache.open(spec)
    assert len(cache.index) == 20
    calls = []
    enc = get_encoder(encoder)
    monkeypatch.setattr(enc, "encode", lambda t: calls.append(t) or np.zeros((len(t), 64)))
    again = embed_texts(texts, encoder)
    assert calls == []  # nothing re-embedded
    assert np.allclose(first, again, atol=2e-3)  # float16 in the cache
    monkeypatch.setenv("COE_GATEWAY_NO_EMBED_CACHE", "1")
    embed_texts(texts, encoder)
    assert len(calls) == 1 and os.environ["COE_GATEWAY_NO_EMBED_CACHE"] == "1"
