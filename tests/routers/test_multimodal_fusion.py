"""Fusions: fitted on train only, the documented formulas, robust to constant (blanked) images."""

from __future__ import annotations

import numpy as np
import pytest

from coe_gateway.routers.embedding import normalise
from coe_gateway.routers.multimodal.fusion import Fusion
from coe_gateway.routers.multimodal.inputs import ModalityInputs


def inputs(n: int = 80, seed: int = 0) -> ModalityInputs:
    rng = np.random.default_rng(seed)
    return ModalityInputs(normalise(rng.normal(size=(n, 16))),
                          {"pixels": rng.normal(size=(n, 40)) * 3 + 1,
                           "stats": rng.normal(size=(n, 5))})


def test_concat_gives_every_block_the_text_variance() -> None:
    x = inputs()
    f = Fusion.fit(x, ["pixels", "stats"], "concat")
    out = f.transform(x)  # (N, 16 + 40 + 5)
    assert out.shape == (80, 61) and f.out_dim == 61
    v_text = x.text.var(axis=0).sum()
    np.testing.assert_allclose(out[:, :16], x.text)
    np.testing.assert_allclose(out[:, 16:56].var(axis=0).sum(), v_text, rtol=1e-4)
    np.testing.assert_allclose(out[:, 56:].var(axis=0).sum(), v_text, rtol=1e-4)


def test_mean_is_the_normalised_average_of_text_and_projected_image() -> None:
    x = inputs()
    f = Fusion.fit(x, ["pixels", "stats"], "mean")
    i = f.project(f.standardise(x))  # (N, Dt) unit
    np.testing.assert_allclose(np.linalg.norm(i, axis=1), 1.0, rtol=1e-5)
    expected = normalise((x.text + i) / 2)
    np.testing.assert_allclose(f.transform(x), expected, rtol=1e-5, atol=1e-6)
    assert f.components.shape == (16, 45)


def test_adaptive_is_mmr_kmeansnew() -> None:
    x = inputs()
    f = Fusion.fit(x, ["pixels"], "adaptive")
    t, i = x.text.astype(np.float64), f.project(f.standardise(x))

    def conf(v: np.ndarray) -> np.ndarray:  # cosine to the train mean, norm z-score
        mu, norm = v.mean(axis=0), np.linalg.norm(v, axis=1)
        cos = v @ mu / (norm * np.linalg.norm(mu) + 1e-8)
        size = 1 / (1 + np.exp(-(norm - norm.mean()) / (norm.std() + 1e-8)))
        out: np.ndarray = 0.5 * (cos + 1) / 2 + 0.5 * size
        return out

    w = np.exp(5 * np.stack([conf(t), conf(i)], axis=1))
    w /= w.sum(axis=1, keepdims=True)
    fused = w[:, :1] * t + w[:, 1:] * i + 0.5 * t * i + 0.5 * np.abs(t - i)
    np.testing.assert_allclose(f.transform(x), normalise(fused), rtol=1e-4, atol=1e-6)


def test_statistics_come_from_train_and_survive_the_round_trip() -> None:
    train, test = inputs(seed=0), inputs(seed=1)
    for method in ("mean", "concat", "adaptive", "tokens"):
        f = Fusion.fit(train, ["pixels"], method)
        g = Fusion.from_saved(f.config(), f.arrays())
        np.testing.assert_array_equal(f.transform(test), g.transform(test))
        np.testing.assert_allclose(f.mean, train.blocks["pixels"].mean(axis=0), rtol=1e-5)


def test_a_constant_image_block_gives_finite_features() -> None:
    """The evaluator's blanked control: every image has the same features."""
    x = inputs()
    blank = ModalityInputs(x.text, {"pixels": np.ones((80, 40))})
    for method in ("mean", "concat", "adaptive", "tokens"):
        out = Fusion.fit(blank, ["pixels"], method).transform(blank)
        assert np.isfinite(out).all(), method


def test_bad_fusion_and_missing_block() -> None:
    with pytest.raises(ValueError, match="fusion must be one of"):
        Fusion.fit(inputs(), ["pixels"], "sum")
    with pytest.raises(KeyError, match="ocr"):
        Fusion.fit(inputs(), ["ocr"], "mean")
