"""Image-aware routers on 200 real MATH-V records with the real image features (shipped
stores for pixels; stats are computed, milliseconds each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coe_gateway.records import RecordSet
from coe_gateway.routers.multimodal.base import MultimodalRouter
from coe_gateway.routers.multimodal.inputs import ModalityInputs
from coe_gateway.routers.registry import load_router, router_class

REPO = Path(__file__).resolve().parents[2]
MATHV = REPO.parent / "shared" / "data" / "mathv" / "records.jsonl.gz"
STORES = REPO / "data" / "image-features" / "mathv"
KINDS = ["pixels", "stats"]
N = 200


@pytest.fixture(scope="module")
def mathv() -> RecordSet:
    if not MATHV.exists() or not STORES.is_dir():
        pytest.skip(f"needs {MATHV} and the shipped image features in {STORES}")
    from coe_gateway.eval.datasets import load_records

    return load_records([str(MATHV)]).subset(np.arange(N))


@pytest.fixture(scope="module")
def mathv_encoder(mathv: RecordSet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from coe_gateway.routers.distill import build_static_encoder

    path = build_static_encoder(tmp_path_factory.mktemp("enc") / "static", dim=64,
                                only_texts=[q.text for q in mathv.queries()])
    return {"kind": "static", "path": str(path)}


@pytest.mark.parametrize("kind, fusion", [("image-linearmf", "concat"),
                                          ("image-knn", "adaptive")])
def test_real_features_train_predict_and_round_trip(
        kind: str, fusion: str, mathv: RecordSet, mathv_encoder: dict[str, object],
        tmp_path: Path) -> None:
    train, test = mathv.subset(np.arange(150)), mathv.subset(np.arange(150, N))
    cls = router_class(kind)
    assert issubclass(cls, MultimodalRouter)
    router = cls.fit(train, features=KINDS, fusion=fusion, encoder=mathv_encoder)
    text_only = cls.fit(train, features=[], encoder=mathv_encoder)
    inputs = router.inputs(test.queries())
    assert inputs.mask.all()  # every MATH-V record has its image
    assert inputs.blocks["pixels"].shape == (50, 1280)
    np.testing.assert_allclose(np.linalg.norm(inputs.blocks["pixels"], axis=1), 1.0, atol=1e-2)
    assert inputs.blocks["stats"].std(axis=0).max() > 0  # the images differ
    p = router.predict_inputs(inputs)
    assert p.quality.shape == (50, len(mathv.models))
    assert not np.allclose(p.quality, text_only.predict_inputs(inputs).quality)
    # text-only requests: exactly the text-only router
    np.testing.assert_array_equal(router.predict_inputs(inputs.without_images()).quality,
                                  text_only.predict_inputs(inputs).quality)
    loaded = load_router(router.save(tmp_path / kind))
    assert isinstance(loaded, MultimodalRouter)
    np.testing.assert_array_equal(loaded.predict_inputs(inputs).quality, p.quality)
    # the evaluator's path: the same arrays through the dataclass constructor
    again = ModalityInputs(inputs.text, dict(inputs.blocks), inputs.mask)
    np.testing.assert_array_equal(router.predict_inputs(again).quality, p.quality)
