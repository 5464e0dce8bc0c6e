"""The clip kind on a tiny randomly initialised CLIP saved locally (real code path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coe_gateway.vision.features.base import build_extractor, feature_dim


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-clip")
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=8,
                              projection_dim=16)
    CLIPVisionModelWithProjection(config).save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": 32},
                       crop_size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


def test_clip_requires_a_local_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="option 'path' is required"):
        build_extractor("clip")
    with pytest.raises(ValueError, match="option 'path'.*not a directory"):
        build_extractor("clip", {"path": str(tmp_path / "nowhere")})


def test_clip_unit_vectors_offline(tiny_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    extractor = build_extractor("clip", {"path": str(tiny_clip)})
    assert extractor.dim == feature_dim("clip", {"path": str(tiny_clip)}) == 16
    images = [Image.new("RGB", (64, 48), "white"), Image.new("L", (40, 90), 30),
              Image.new("RGBA", (20, 20), (255, 0, 0, 128))]
    out = extractor.extract(images)
    assert out.shape == (3, 16) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(extractor.extract(images[1:2])[0], out[1], atol=1e-5)
    assert extractor.fingerprint() == build_extractor(
        "clip", {"path": str(tiny_clip), "batch_size": 1}).fingerprint()
