"""Shared fixtures: the two real shipped experts (SmolLM2-135M, Gemma-3-270M), loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coe_gateway.config import DEFAULT_MODELS_DIR, expand
from coe_gateway.fusion.config import MotConfig
from coe_gateway.fusion.experts import FrozenExpert
from coe_gateway.fusion.model import MixtureOfThoughts
from coe_gateway.fusion.store import load_experts

STATIC = {"kind": "static", "dim": 256}


@pytest.fixture(scope="session")
def models_dir() -> Path:
    path = Path(expand(DEFAULT_MODELS_DIR))
    if not (path / "gemma-3-270m").exists():
        pytest.fail("the shipped checkpoints are missing: run `coe-gateway models prepare`")
    return path


@pytest.fixture(scope="session")
def experts(models_dir: Path) -> list[FrozenExpert]:
    torch.set_num_threads(2)
    return load_experts(MotConfig(encoder=STATIC), models_dir)


def perturbed(experts: list[FrozenExpert], seed: int = 0, **cfg: object) -> MixtureOfThoughts:
    """A fused model whose interaction layers do something (the output projections are
    random instead of zero), so that equalities below are not trivially about zeros."""
    torch.manual_seed(seed)  # the other layers' random initialisation
    model = MixtureOfThoughts(experts, MotConfig(encoder=STATIC, **cfg), 256)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            for up in layer.up:
                up.weight.normal_(0, 0.05, generator=gen)
    return model.eval()
