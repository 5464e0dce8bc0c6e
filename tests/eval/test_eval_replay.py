"""Replaying a small hand-made routing log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coe_gateway.eval.replay import analyse, calibration, load_log, to_records, write_replay
from coe_gateway.records import RecordError, load_jsonl

LOG = Path(__file__).parent / "data" / "routing_log.jsonl"


def test_summary_of_the_hand_made_log() -> None:
    s = analyse(load_log(LOG))
    assert s["decisions"] == 5 and s["span_s"] == 10.0 and s["errors"] == 1
    assert s["cost_usd"] == pytest.approx(0.022)
    assert s["latency_s"]["p50"] == pytest.approx(0.3)
    assert s["first_choice_rate"] == pytest.approx(0.8)  # r4 fell back to its second choice
    assert s["tokens"] == {"prompt": 70, "completion": 345}
    assert s["routers"] == {"knn": 4, "prior": 1}
    assert s["policies"] == {"trade-off": 4, "quality-first": 1}
    assert s["tenants"] == {"acme": 2, "-": 1, "beta": 2}
    small, big = s["experts"]["small"], s["experts"]["big"]
    assert (small["count"], small["share"], big["share"]) == (3, 0.6, 0.4)
    assert small["latency_s"]["p50"] == pytest.approx(0.2) and small["errors"] == 1
    assert big["cost_usd"] == pytest.approx(0.02) and big["mean_outcome"] == 0.5


def test_calibration_of_the_answering_experts_prediction() -> None:
    cal = analyse(load_log(LOG))["calibration"]
    # (predicted, observed): r1 (0.8, 1), r2 (0.7, 0), r4 (0.5, 1)
    assert cal["n"] == 3
    assert cal["gap"] == pytest.approx(2.0 / 3 - 2.0 / 3)
    assert cal["brier"] == pytest.approx((0.04 + 0.49 + 0.25) / 3)
    assert cal["ece"] == pytest.approx((0.2 + 0.7 + 0.5) / 3)
    assert [b["n"] for b in cal["bins"]] == [1, 1, 1]


def test_calibration_closed_form() -> None:
    perfect = calibration([0.25, 0.25, 0.25, 0.25], [0, 0, 0, 1])
    assert perfect["ece"] == pytest.approx(0.0) and perfect["gap"] == pytest.approx(0.0)
    assert perfect["brier"] == pytest.approx((3 * 0.0625 + 0.5625) / 4)
    assert calibration([], [])["n"] == 0


def test_outputs_and_records(tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    write_replay(LOG, tmp_path / "out", records)
    assert json.loads((tmp_path / "out" / "replay.json").read_text())["decisions"] == 5
    md = (tmp_path / "out" / "replay.md").read_text()
    assert "| small | 60.0% | 3 |" in md and "ECE 0.467" in md
    rs = load_jsonl(records)  # the routing-records format
    assert rs.ids == ["replay/r1", "replay/r2", "replay/r4"]
    assert rs.models == ["small", "big"]
    assert len(to_records(load_log(LOG))) == 3


@pytest.mark.parametrize(("edit", "field"), [
    (('"latency_s": 0.1', '"latency_s": "fast"'), "latency_s"),
    (('"quality": 0.8, "confidence": 0.9}, "big"', '"quality": 1.5, "confidence": 0.9}, "big"'),
     "predicted.small.quality"),
    (('"request_id": "r1", ', ""), "request_id"),
])
def test_malformed_log_line_names_file_line_field(tmp_path: Path, edit: tuple[str, str],
                                                  field: str) -> None:
    lines = LOG.read_text().splitlines()
    lines[0] = lines[0].replace(*edit)
    bad = tmp_path / "log.jsonl"
    bad.write_text("\n".join([lines[1], lines[0]]) + "\n")
    with pytest.raises(RecordError) as err:
        load_log(bad)
    assert (err.value.path, err.value.line, err.value.field) == (str(bad), 2, field)


def test_attempt_records_of_the_gateway_replay_as_one_decision_per_request(
        tmp_path: Path) -> None:
    base = {"ts": 1.0, "query": "q", "router": "prior", "policy": {"kind": "trade-off"},
            "ranking": ["big", "small"], "latency_s": 0.1, "prompt_tokens": 1,
            "completion_tokens": 1, "outcome": None}
    lines = [
        {**base, "request_id": "r1", "expert": "big", "attempt": 0, "verdict": "failed",
         "final": False, "status": 502, "cost_usd": 0.0},
        {**base, "request_id": "r1", "expert": "small", "attempt": 1, "verdict": "accepted",
         "final": True, "status": 200, "cost_usd": 0.001},
        {**base, "request_id": "r2", "router": None, "expert": "big", "attempt": 0,
         "verdict": "accepted", "final": True, "status": 200, "cost_usd": 0.002},
    ]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    decisions = load_log(log)
    assert [(d.request_id, d.expert) for d in decisions] == [("r1", "small"), ("r2", "big")]
    s = analyse(decisions)
    assert s["decisions"] == 2 and s["errors"] == 0
