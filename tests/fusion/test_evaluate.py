"""The systems of the held-out comparison, computed from per-item scores (no models)."""

from __future__ import annotations

from pathlib import Path

from coe_gateway.fusion.evaluate import Row, correctness, read_rows, report

EXPERTS = ["a", "b"]


def _row(i: int, a: list[float], b: list[float], fused: list[float], route: int = 1,
         gold: int = 0) -> Row:
    return Row("s", f"q{i}", gold, {"single:a": a, "single:b": b, "fused": fused,
                                    "control": b}, {"fused": route, "control": route})


def test_systems_follow_their_definitions() -> None:
    rows = [
        _row(0, [-1, -2], [-3, -1], [-1, -5], route=1),      # a right, b wrong, fused right
        _row(1, [-3, -1], [-1, -3], [-3, -1], route=0),      # b right; router picks a (wrong)
        _row(2, [-1.0, -1.2], [-2.0, -1.0], [-1, -1]),       # a right; fused ties: no answer
    ]
    acc = correctness(rows, EXPERTS)
    assert acc["single:a"].tolist() == [True, False, True]
    assert acc["single:b"].tolist() == [False, True, False]
    assert acc["top1"].tolist() == [False, False, False]
    assert acc["oracle"].tolist() == [True, True, True]
    # summed: q0 [-4, -3] wrong; q1 [-4, -4] tie -> wrong; q2 [-3.0, -2.2] wrong
    assert acc["ensemble"].tolist() == [False, False, False]
    assert acc["fused"].tolist() == [True, False, False]


def test_report_and_resumed_rows(tmp_path: Path) -> None:
    rows = [_row(i, [-1, -2], [-2, -1], [-1, -2]) for i in range(20)]
    text = report(rows, EXPERTS)
    assert "### s (n = 20)" in text and "| **fused** | **100.0" in text
    path = tmp_path / "scores.jsonl"
    import json

    path.write_text("".join(json.dumps(r.__dict__) + "\n" for r in [*rows, rows[0]]))
    assert len(read_rows(path)) == 20  # a later line for the same item replaces the first


def test_routes_follow_each_models_router(experts: list) -> None:  # type: ignore[type-arg]
    import torch

    from coe_gateway.fusion.evaluate import _routes
    from coe_gateway.fusion.tasks import train_set

    from .conftest import perturbed

    a, b = perturbed(experts), perturbed(experts, seed=1)
    with torch.no_grad():
        b.router.net[2].bias[1] = 1.0
    ra, rb = _routes([a, b], train_set()[:4])
    assert ra == [0] * 4 and rb == [1] * 4          # untrained ties go to expert 0
