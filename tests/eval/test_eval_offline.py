"""Strategies run offline over recorded answers (coe_gateway.eval.offline) and in suites:
the query's cost is the sum of the attempts, its quality the returned answer's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coe_gateway.errors import ConfigError
from coe_gateway.eval.offline import serve_records, strategy_point, train_tiers
from coe_gateway.eval.runner import run_suite
from coe_gateway.eval.sweep import Arrays
from coe_gateway.strategies import build_strategy

EXPERTS = ("cheap", "mid", "big")
# four queries: cheap and mid agree on 0 and 1 (right on 0, wrong on 1); disagree on 2, 3
ANSWERS = [{"cheap": "A", "mid": "A", "big": "A"}, {"cheap": "B", "mid": "B", "big": "C"},
           {"cheap": "A", "mid": "B", "big": "B"}, {"cheap": None, "mid": "D", "big": "D"}]
SCORES = np.array([[1, 1, 1], [0, 0, 1], [0, 1, 1], [0, 1, 1]], dtype=float)
COSTS = np.array([1.0, 2.0, 10.0])


def arrays() -> Arrays:
    quality = np.tile([0.5, 0.6, 0.9], (4, 1))
    return Arrays(EXPERTS, quality, np.full((4, 3), 0.8), np.tile(COSTS, (4, 1)), SCORES,
                  np.tile(COSTS, (4, 1)))


def test_offline_agree_costs_the_sum_of_its_attempts() -> None:
    strategy = build_strategy("agree", {"answer": "choice", "floor": 0.1})
    served = serve_records(strategy, arrays(), ["q"] * 4, ANSWERS, "prior")
    assert [EXPERTS[c] for c in served.choice] == ["mid", "mid", "big", "big"]
    assert served.cost.tolist() == [3.0, 3.0, 13.0, 13.0]  # cheap + mid (+ big)
    assert served.attempts.tolist() == [2, 2, 3, 3]


def test_offline_point_quality_is_the_returned_answers() -> None:
    pt = strategy_point("agree", {"answer": "choice"}, "floor", 0.1, arrays(), ["q"] * 4,
                        ANSWERS, "prior")
    assert pt.accuracy == pytest.approx(0.75)  # wrong only where cheap and mid agreed on B
    assert pt.cost == pytest.approx(8.0)
    assert pt.shares == {"cheap": 0.0, "mid": 0.5, "big": 0.5}


def test_offline_verifier_says_yes_when_its_own_answer_matches() -> None:
    strategy = build_strategy("verify", {"answer": "choice", "floor": 0.1})
    served = serve_records(strategy, arrays(), ["q"] * 4, ANSWERS, "prior")
    # cheap answers, mid verifies: yes on 0 and 1, no on 2, unreadable on 3 -> big
    assert [EXPERTS[c] for c in served.choice] == ["cheap", "cheap", "big", "big"]


def test_offline_train_tiers_follow_the_training_means() -> None:
    tiers = train_tiers(EXPERTS, np.array([0.5, 0.6, 0.9]), COSTS, {"floor": 0.5, "extra": 0})
    assert tiers == [["cheap", "mid"], ["big"]]


def _records(path: Path, answers: bool) -> Path:
    rng = np.random.default_rng(0)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(60):
            key = "ABCD"[i % 4]
            picks = {m: key if rng.random() < p else "ABCD"[(i + 1) % 4]
                     for m, p in zip(EXPERTS, (0.5, 0.6, 0.9))}
            rec = {"id": f"t/{i}", "prompt": f"question {i} " + "x" * (i % 7),
                   "category": "c", "scores": {m: float(a == key) for m, a in picks.items()},
                   "output_chars": {"cheap": 40, "mid": 80, "big": 400}}
            if answers:
                rec["answers"] = picks
            fh.write(json.dumps(rec) + "\n")
    return path


def _suite(tmp_path: Path, data: Path) -> Path:
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""
name: tiny-cascade
data: {{paths: [{data}], attribution: synthetic}}
costs: {{prices: {{cheap: [1, 1], mid: [2, 2], big: [10, 10]}}}}
routers: [{{name: prior, kind: prior}}]
policies: [{{kind: trade-off, sweep: 5}}]
strategies:
  - {{kind: agree, params: {{answer: choice, floor: 0.1}}, values: [0.1, 0.5]}}
  - {{kind: agree-gated, name: gated, params: {{answer: choice, tiers: train, extra: 1, floor: 0.1}},
      values: [0, 2, 100]}}
""")
    return suite


def test_suite_strategies_appear_beside_policies(tmp_path: Path) -> None:
    suite = _suite(tmp_path, _records(tmp_path / "r.jsonl", answers=True))
    result = run_suite(suite, tmp_path / "out")
    labels = [c.label for c in result.curves]
    assert labels == ["prior / trade-off", "prior / agree", "prior / gated"]
    gated = result.curves[2]
    assert gated.sweep_param == "margin" and len(gated.points) == 3
    assert gated.params["tiers"] == [["cheap", "mid"], ["big"]]  # from the training means
    report = (tmp_path / "out" / "report.md").read_text()
    assert "prior / gated" in report


def test_suite_strategies_need_answers(tmp_path: Path) -> None:
    suite = _suite(tmp_path, _records(tmp_path / "r.jsonl", answers=False))
    with pytest.raises(ConfigError) as info:
        run_suite(suite, None)
    assert "answers" in str(info.value) and "strategies[0]" in str(info.value)
