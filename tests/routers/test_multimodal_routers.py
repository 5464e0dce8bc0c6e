"""Image-aware routers on synthetic data where only the image says which expert is right.

Text embeddings are random unit vectors (no signal); the ``pixels`` block is a noisy code of
a latent class c, and expert c answers class-c queries well. Every router must beat its
text-only twin on held-out rows, and must lose that edge when the image rows are permuted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coe_gateway.routers.base import Query
from coe_gateway.routers.embedding import normalise
from coe_gateway.routers.multimodal.base import MultimodalRouter
from coe_gateway.routers.multimodal.inputs import ModalityInputs
from coe_gateway.routers.registry import ROUTER_KINDS, load_router, router_class

EXPERTS = ["a", "b", "c"]
KINDS = ["image-knn", "image-linearmf", "image-mlpmf", "image-kmeans", "image-cmr"]
SMALL: dict[str, dict[str, Any]] = {  # fast settings for the tests
    "image-knn": {"k": 15},
    "image-linearmf": {"rank": 16},
    "image-mlpmf": {"hidden": 32, "latent": 8, "epochs": 40, "patience": 8},
    "image-kmeans": {"clusters": 6},
    "image-cmr": {"d": 16, "heads": 2, "hidden": 16, "epochs": 25, "patience": 6,
                  "batch_size": 32, "layers": 1},
}
N_TRAIN, N_TEST, DT, DI = 360, 240, 24, 12


def synthetic(n: int, seed: int, dt: int = DT) -> tuple[ModalityInputs, np.ndarray]:
    """(inputs, scores (n, 3)): text is noise, the image encodes the right expert."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 3, n)  # (n,) latent class
    text = normalise(rng.normal(size=(n, dt)))  # (n, Dt)
    codes = np.random.default_rng(99).normal(size=(3, DI)) * 2.0  # (3, Di) fixed per class
    pixels = codes[c] + rng.normal(size=(n, DI))  # (n, Di)
    good = rng.random((n, 3)) < np.where(np.eye(3)[c] > 0, 0.9, 0.15)  # (n, 3)
    return ModalityInputs(text, {"pixels": pixels}, np.ones(n, dtype=bool)), good.astype(float)


def realised(router: MultimodalRouter, inputs: ModalityInputs, scores: np.ndarray) -> float:
    """Mean score of the expert each query is routed to (highest predicted quality)."""
    choice = router.predict_inputs(inputs).quality.argmax(axis=1)
    return float(scores[np.arange(len(scores)), choice].mean())


def fit(kind: str, inputs: ModalityInputs, scores: np.ndarray, **options: Any) -> MultimodalRouter:
    cls = router_class(kind)
    assert issubclass(cls, MultimodalRouter)
    return cls.fit_inputs(inputs, scores, EXPERTS, **{**SMALL[kind], **options})


def permuted(inputs: ModalityInputs, seed: int) -> ModalityInputs:
    perm = np.random.default_rng(seed).permutation(len(inputs))
    return ModalityInputs(inputs.text, {k: v[perm] for k, v in inputs.blocks.items()},
                          inputs.mask[perm])


@pytest.fixture(scope="module")
def data() -> tuple[ModalityInputs, np.ndarray, ModalityInputs, np.ndarray]:
    tr, s_tr = synthetic(N_TRAIN, 1)
    te, s_te = synthetic(N_TEST, 2)
    return tr, s_tr, te, s_te


@pytest.fixture(scope="module")
def fitted(data: tuple[ModalityInputs, np.ndarray, ModalityInputs, np.ndarray]
           ) -> dict[tuple[str, str], MultimodalRouter]:
    """Every kind fitted text-only (T), on the image (I, concat fusion; CMR its own), and on
    the image permuted across rows (P)."""
    tr, s_tr, _, _ = data
    out: dict[tuple[str, str], MultimodalRouter] = {}
    for kind in KINDS:
        out[kind, "T"] = fit(kind, tr, s_tr)
        out[kind, "I"] = fit(kind, tr, s_tr, features=["pixels"], fusion="concat")
        out[kind, "P"] = fit(kind, permuted(tr, 5), s_tr, features=["pixels"], fusion="concat")
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_image_beats_text_only_and_permuted_image_does_not(
        kind: str, data: tuple[ModalityInputs, np.ndarray, ModalityInputs, np.ndarray],
        fitted: dict[tuple[str, str], MultimodalRouter]) -> None:
    _, _, te, s_te = data
    text_only = realised(fitted[kind, "T"], te, s_te)
    image = realised(fitted[kind, "I"], te, s_te)
    shuffled = realised(fitted[kind, "P"], permuted(te, 6), s_te)
    assert image > text_only + 0.25, (kind, image, text_only)
    assert shuffled < text_only + 0.12, (kind, shuffled, text_only)
    assert shuffled < image - 0.2


@pytest.mark.parametrize("fusion", ["mean", "adaptive"])
@pytest.mark.parametrize("kind", ["image-knn", "image-linearmf", "image-kmeans"])
def test_every_fusion_carries_the_image(
        kind: str, fusion: str,
        data: tuple[ModalityInputs, np.ndarray, ModalityInputs, np.ndarray],
        fitted: dict[tuple[str, str], MultimodalRouter]) -> None:
    tr, s_tr, te, s_te = data
    router = fit(kind, tr, s_tr, features=["pixels"], fusion=fusion)
    assert realised(router, te, s_te) > realised(fitted[kind, "T"], te, s_te) + 0.2


@pytest.mark.parametrize("kind", KINDS)
def test_text_fallback_equals_the_text_only_router(
        kind: str, data: tuple[ModalityInputs, np.ndarray, ModalityInputs, np.ndarray],
        fitted: dict[tuple[str, str], MultimodalRouter]) -> None:
    _, _, te, _ = data
    blank = te.without_images()
    text_only = fitted[kind, "T"].predict_inputs(te)
    fallback = fitted[kind, "I"].predict_inputs(blank)
    np.testing.assert_array_equal(fallback.quality, text_only.quality)
    np.testing.assert_array_equal(fallback.confidence, text_only.confidence)
    # a mixed batch routes each row by what it has (float32 matmul rounding may differ with
    # the batch's size, hence the tolerance)
    mixed_mask = np.arange(len(te)) % 2 == 0
    mixed = ModalityInputs(te.text, te.blocks, mixed_mask)
    q = fitted[kind, "I"].predict_inputs(mixed).quality
    np.testing.assert_allclose(q[~mixed_mask], text_only.quality[~mixed_mask], atol=1e-6)
    np.testing.assert_allclose(q[mixed_mask],
                               fitted[kind, "I"].predict_inputs(te).quality[mixed_mask],
                               atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind: str, tmp_path: Path,
                              data: tuple[ModalityInputs, np.ndarray, ModalityInputs, np.ndarray],
                              fitted: dict[tuple[str, str], MultimodalRouter]) -> None:
    _, _, te, _ = data
    for variant in ("T", "I"):
        router = fitted[kind, variant]
        loaded = load_router(router.save(tmp_path / variant))
        assert isinstance(loaded, MultimodalRouter) and loaded.kind == kind
        a, b = router.predict_inputs(te), loaded.predict_inputs(te)
        np.testing.assert_array_equal(a.quality, b.quality)
        np.testing.assert_array_equal(a.confidence, b.confidence)
        assert loaded.features == router.features


@pytest.mark.parametrize("kind", KINDS)
def test_prediction_contract(kind: str,
                             data: tuple[ModalityInputs, np.ndarray, ModalityInputs, np.ndarray],
                             fitted: dict[tuple[str, str], MultimodalRouter]) -> None:
    _, _, te, _ = data
    p = fitted[kind, "I"].predict_inputs(te)
    assert p.experts == tuple(EXPERTS) and p.quality.shape == (N_TEST, 3)
    assert np.all((p.quality >= 0) & (p.quality <= 1))
    assert np.all((p.confidence >= 0) & (p.confidence <= 1))


def test_fit_is_deterministic(data: tuple[ModalityInputs, np.ndarray, ModalityInputs,
                                          np.ndarray]) -> None:
    tr, s_tr, te, _ = data
    a = fit("image-mlpmf", tr, s_tr, features=["pixels"], fusion="mean", epochs=5)
    b = fit("image-mlpmf", tr, s_tr, features=["pixels"], fusion="mean", epochs=5)
    np.testing.assert_array_equal(a.predict_inputs(te).quality, b.predict_inputs(te).quality)


def test_registry_knows_every_kind_and_untrained_construction_fails() -> None:
    for kind in KINDS:
        assert kind in ROUTER_KINDS
        cls = router_class(kind)
        assert issubclass(cls, MultimodalRouter) and cls.kind == kind
        with pytest.raises(ValueError, match="fitted heads"):
            cls(EXPERTS)


@pytest.mark.parametrize("options, message", [
    ({"fusion": "median"}, "fusion must be one of .*'median'"),
    ({"features": ["pixels", "smell"]}, "unknown image feature kind.*smell"),
    ({"features": ["pixels"], "bogus": 1}, "unknown option.*bogus"),
])
def test_bad_options_name_the_field(options: dict[str, Any], message: str) -> None:
    tr, s_tr = synthetic(40, 3)
    with pytest.raises(ValueError, match=message):
        fit("image-linearmf", tr, s_tr, **options)


def test_image_features_asked_for_but_none_present() -> None:
    tr, s_tr = synthetic(40, 3)
    with pytest.raises(ValueError, match="no training row has image features"):
        fit("image-knn", tr.without_images(), s_tr, features=["pixels"])


def test_predict_on_queries_with_image_features_equals_predict_inputs(
        encoder: dict[str, object]) -> None:
    """The serving path: ``Query.image_features`` set, text through the router's encoder."""
    from coe_gateway.routers.embedding import embed_texts

    texts = [f"What is {i} plus {i}?" for i in range(60)] + ["Write a poem about the sea."] * 4
    tr, s_tr = synthetic(len(texts), 7)
    text = embed_texts(texts, encoder)
    inputs = ModalityInputs(text, tr.blocks, tr.mask)
    router = fit("image-linearmf", inputs, s_tr, features=["pixels"], fusion="adaptive",
                 encoder=encoder)
    queries = [Query(text=t, image_features={"pixels": inputs.blocks["pixels"][i]})
               if i % 3 else Query(text=t) for i, t in enumerate(texts)]
    by_queries = router.predict(queries)
    mask = np.array([q.image_features is not None for q in queries])
    by_inputs = router.predict_inputs(ModalityInputs(text, inputs.blocks, mask))
    np.testing.assert_allclose(by_queries.quality, by_inputs.quality, rtol=0, atol=1e-6)
    # one live query (embedded without the disk cache's float16 rounding)
    single = router.predict(queries[1:2])
    alone = ModalityInputs(embed_texts(texts[1:2], encoder),
                           {"pixels": inputs.blocks["pixels"][1:2]})
    np.testing.assert_allclose(single.quality, router.predict_inputs(alone).quality, atol=1e-6)
