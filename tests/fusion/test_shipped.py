"""The shipped fused model and its example config: they load, and the trained model is not
its untrained self (its interaction layers add something)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coe_gateway.config import load_config
from coe_gateway.fusion.experts import FrozenExpert
from coe_gateway.fusion.scoring import score_item
from coe_gateway.fusion.store import load, read_meta

from .test_model import ITEM

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "experts" / "mot-arc-easy"


def test_example_config_names_the_shipped_fused_model() -> None:
    cfg = load_config(ROOT / "configs" / "mot.yaml")
    fused = next(e for e in cfg.experts if e.backend == "mot")
    assert Path(cfg.model_path(fused)) == SHIPPED
    parts = [e for e in cfg.experts if e.name in fused.fused_from]
    assert fused.price.input_per_mtok == pytest.approx(sum(p.price.input_per_mtok for p in parts))


def test_shipped_model_is_trained_and_loads(experts: list[FrozenExpert],
                                             models_dir: Path) -> None:
    meta = read_meta(SHIPPED)
    assert meta["info"]["finished"] and meta["config"]["cross_attention"]
    model = load(SHIPPED, models_dir, experts=experts)
    fused = score_item(model, ITEM, 0).logprob
    alone = score_item(model, ITEM, 0, fuse=False).logprob
    assert max(abs(a - b) for a, b in zip(fused, alone)) > 1e-3
