"""ModalityInputs from queries: image_features first, then image paths (one featurizer call,
here a fake one), else absent; and ``fit`` from a RecordSet through the same path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from coe_gateway.records import RecordSet
from coe_gateway.routers.base import Query
from coe_gateway.routers.multimodal.base import MultimodalRouter
from coe_gateway.routers.multimodal.inputs import ModalityInputs
from coe_gateway.vision.features.featurizer import ImageFeatureBatch

DIM = 6


def fake_vector(path: str) -> np.ndarray:
    """A deterministic (DIM,) vector per path; 'broken' paths have no features."""
    seed = sum(path.encode())
    return np.random.default_rng(seed).normal(size=DIM).astype(np.float32)


@pytest.fixture
def fake_featurizer(monkeypatch: pytest.MonkeyPatch) -> list[list[str | None]]:
    """Replaces the featurizer and the dimension lookup; records each call's paths."""
    calls: list[list[str | None]] = []

    def image_features_for_paths(paths: Any, kinds: Any, options: Any = None,
                                 progress: Any = None) -> ImageFeatureBatch:
        calls.append(list(paths))
        ok = np.array([p is not None and "broken" not in p for p in paths])
        rows = np.stack([fake_vector(p) if good else np.zeros(DIM, np.float32)
                         for p, good in zip(paths, ok)])
        return ImageFeatureBatch({k: rows * (i + 1) for i, k in enumerate(kinds)}, ok)

    monkeypatch.setattr("coe_gateway.vision.features.featurizer.image_features_for_paths",
                        image_features_for_paths)
    monkeypatch.setattr("coe_gateway.vision.features.base.feature_dim", lambda k, o=None: DIM)
    return calls


def test_from_queries_prefers_given_features_then_paths(
        fake_featurizer: list[list[str | None]], encoder: dict[str, object]) -> None:
    given = np.arange(DIM, dtype=np.float32)
    queries = [Query("q0", image_features={"stats": given}),
               Query("q1", image="img/1.png"), Query("q2"),
               Query("q3", image="img/broken.png"), Query("q4", image="img/4.png")]
    x = ModalityInputs.from_queries(queries, ["stats"], encoder)
    assert fake_featurizer == [["img/1.png", "img/broken.png", "img/4.png"]]  # one batch
    np.testing.assert_array_equal(x.mask, [True, True, False, False, True])
    np.testing.assert_array_equal(x.blocks["stats"][0], given)
    np.testing.assert_array_equal(x.blocks["stats"][1], fake_vector("img/1.png"))
    assert not x.blocks["stats"][2].any() and not x.blocks["stats"][3].any()
    assert x.text.shape[0] == 5


def test_text_only_router_reads_no_image(fake_featurizer: list[list[str | None]],
                                         encoder: dict[str, object]) -> None:
    x = ModalityInputs.from_queries([Query("q", image="img/1.png")], [], encoder)
    assert fake_featurizer == [] and x.blocks == {} and not x.mask.any()


def test_wrong_width_names_the_kind(encoder: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"image_features\['pixels'\] has 3 values"):
        ModalityInputs.from_queries([Query("q", image_features={"pixels": np.zeros(3)})],
                                    ["pixels"], encoder, dims={"pixels": 8})


def test_constructor_checks_shapes_and_defaults_presence() -> None:
    text = np.eye(3, dtype=np.float32)
    block = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    x = ModalityInputs(text, {"pixels": block})
    np.testing.assert_array_equal(x.mask, [True, False, True])
    with pytest.raises(ValueError, match="block 'pixels'"):
        ModalityInputs(text, {"pixels": block[:2]})
    with pytest.raises(ValueError, match="present has 2 rows"):
        ModalityInputs(text, {}, np.ones(2, bool))


def test_fit_from_records_reads_the_images_via_the_featurizer(
        fake_featurizer: list[list[str | None]], encoder: dict[str, object]) -> None:
    n = 60
    rng = np.random.default_rng(0)
    records = RecordSet(
        ids=[str(i) for i in range(n)], prompts=[f"question {i}" for i in range(n)],
        categories=[None] * n, splits=[None] * n, models=["a", "b"],
        scores=(rng.random((n, 2)) < 0.5).astype(float),
        images=[f"img/{i}.png" if i % 4 else None for i in range(n)])
    from coe_gateway.routers.registry import router_class

    cls = router_class("image-kmeans")
    assert issubclass(cls, MultimodalRouter)
    router = cls.fit(records, features=["stats", "pixels"], fusion="mean", encoder=encoder,
                     clusters=4)
    assert len(fake_featurizer) == 1 and len(fake_featurizer[0]) == 45
    p = router.predict(records.queries()[:8])
    assert p.quality.shape == (8, 2)
    assert router.fusion_state is not None and router.fusion_state.kinds == ("stats", "pixels")
