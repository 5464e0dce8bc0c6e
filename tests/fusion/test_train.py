"""Training the fused model on the real experts: a few steps on a few questions. It learns
(the answer's NLL falls on the questions it trains on), it is deterministic with a seed, and
a run stopped and resumed ends with the weights of an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import torch

from coe_gateway.fusion.config import MotConfig
from coe_gateway.fusion.experts import FrozenExpert
from coe_gateway.fusion.store import WEIGHTS, load
from coe_gateway.fusion.train import TrainConfig, question_of, train
from coe_gateway.fusion.tasks import McItem

from .conftest import STATIC

SMALL = TrainConfig(epochs=2, batch=2, limit=2, warmup=1, lr=3e-3, save_every=1)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_question_of_strips_the_frame() -> None:
    item = McItem("x", "Question: Why is the sky blue?\nAnswer:", ("a", "b"), 0)
    assert question_of(item) == "Why is the sky blue?"


def test_training_lowers_the_answer_nll_and_saves_a_loadable_model(
        experts: list[FrozenExpert], tmp_path: Path, models_dir: Path) -> None:
    logs = []
    cfg = SMALL.model_copy(update={"epochs": 4})
    model = train(MotConfig(encoder=STATIC), cfg, tmp_path, models_dir, on_step=logs.append,
                  experts=experts)
    assert [s.step for s in logs] == [1, 2, 3, 4]
    assert logs[-1].lm < logs[0].lm                      # same two questions every step
    assert (tmp_path / WEIGHTS).exists()
    again = load(tmp_path, models_dir, experts=experts)
    for k, v in model.state_dict().items():
        assert torch.allclose(again.state_dict()[k], v, atol=1e-2), k


def test_training_is_deterministic_and_resumes_exactly(
        experts: list[FrozenExpert], tmp_path: Path, models_dir: Path) -> None:
    mot = MotConfig(encoder=STATIC)
    whole = _weights(train(mot, SMALL, tmp_path / "a", models_dir, experts=experts))
    same = _weights(train(mot, SMALL, tmp_path / "b", models_dir, experts=experts))
    assert all(torch.equal(whole[k], same[k]) for k in whole)
    # stop after the first step (the time limit is checked after each step), then rerun
    train(mot, SMALL, tmp_path / "c", models_dir, experts=experts, stop_after_s=0.0)
    resumed = _weights(train(mot, SMALL, tmp_path / "c", models_dir, experts=experts))
    assert all(torch.allclose(whole[k], resumed[k], atol=1e-6) for k in whole)
