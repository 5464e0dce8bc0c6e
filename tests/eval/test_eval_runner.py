"""A whole suite on a hand-made data set: baselines, curves, outputs, errors, caching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coe_gateway.errors import ConfigError
from coe_gateway.eval.runner import run_suite
from coe_gateway.eval.suite import load_suite
from coe_gateway.eval.sweep import Arrays, evaluate_point
from coe_gateway.policies import POLICY_KINDS, build_policy
from coe_gateway.routers.base import Prediction
from coe_gateway.routers.prior import PriorRouter

from .conftest import TINY_SCORES


def test_tiny_suite_end_to_end(tiny_suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run_suite(tiny_suite, out)
    test_ids = _test_ids(result)
    base = {b.name: b for b in result.baselines}
    for model, scores in TINY_SCORES.items():
        assert base[model].accuracy == pytest.approx(np.mean([scores[i] for i in test_ids]))
    assert base["oracle"].accuracy == 1.0  # every query has a model that is right
    assert result.reference.strong == "big" and result.reference.weak == "cheap"
    labels = [c.label for c in result.curves]
    assert labels == ["prior / trade-off", "prior / cheapest-above-target"]
    trade = result.curves[0]
    assert len(trade.points) == 12 and trade.points[0].param == 0.0
    # lam = 0 is quality-first: the prior router's best model; a large lam: the cheapest
    assert trade.points[0].shares == {"cheap": 0.0, "mid": 0.0, "big": 1.0}
    assert trade.points[-1].shares["cheap"] == 1.0
    assert result.curves[1].points[-1].param == 1.0
    for c in result.curves:
        assert 0.0 <= c.metrics["aiq"] <= 1.0
        assert c.metrics["ps"] == pytest.approx(max(p.accuracy for p in c.points))
    written = json.loads((out / "results.json").read_text())
    assert written["reference"]["strong"] == "big" and len(written["baselines"]) == 5
    report = (out / "report.md").read_text()
    assert "| prior / trade-off |" in report and "hand-made test data" in report
    assert {p.name for p in out.glob("*.png")} == {
        "cost_quality.png", "cost_quality_trade-off.png",
        "cost_quality_cheapest-above-target.png"}


def _test_ids(result) -> list[int]:  # type: ignore[no-untyped-def]
    from coe_gateway.eval.runner import prepare

    p = prepare(result.suite, result.suite_path)
    return [int(i.split("/")[1]) for i in p.test.ids]


def test_saved_router_with_fewer_experts_and_the_disk_cache(tiny_suite: Path,
                                                            tmp_path: Path) -> None:
    PriorRouter(["cheap", "big"], {"cheap": 0.5, "big": 0.9}).save(tmp_path / "saved")
    text = tiny_suite.read_text().replace(
        "  - {name: prior, kind: prior}\n",
        f"  - {{name: prior, kind: prior}}\n  - {{name: saved, kind: prior, path: "
        f"{tmp_path / 'saved'}}}\n")
    tiny_suite.write_text(text)
    cache = tmp_path / "cache"
    first = run_suite(tiny_suite, cache_dir=cache)
    saved = [c for c in first.curves if c.router == "saved"]
    assert set(saved[0].points[0].shares) == {"cheap", "big"}
    assert not first.timing["routers"]["saved"]["cached"]
    second = run_suite(tiny_suite, cache_dir=cache)
    assert second.timing["routers"]["saved"]["cached"]
    assert [p.accuracy for p in second.curves[2].points] == \
        [p.accuracy for p in first.curves[2].points]


@pytest.mark.parametrize(("edit", "field"), [
    (("kind: prior}", "kind: nope}"), "routers[0]"),
    (("kind: trade-off", "kind: nope"), "policies[0]"),
    (("sweep: 12", "sweep: true"), "policies[0].sweep"),
    (("test_fraction: 0.5", "test_fraction: 1.5"), "split.test_fraction"),
    (("prices: {cheap: [0.1, 0.1], ", "prices: {"), "costs.prices.cheap"),
    (("  attribution: hand", "  models: [cheap, nope]\n  attribution: hand"), "data.models"),
])
def test_bad_suite_names_file_and_field(tiny_suite: Path, edit: tuple[str, str],
                                        field: str) -> None:
    tiny_suite.write_text(tiny_suite.read_text().replace(*edit))
    with pytest.raises(ConfigError) as err:
        run_suite(tiny_suite)
    assert err.value.field == field and str(tiny_suite) in str(err.value)


def test_suite_paths_resolve_against_the_suite_file(tiny_suite: Path) -> None:
    suite = load_suite(tiny_suite)
    assert suite.data.paths == [str(tiny_suite.parent / "tiny.jsonl")]


@pytest.mark.parametrize("kind", sorted(POLICY_KINDS))
def test_sweep_decision_is_the_policys_first_ranked_expert(kind: str) -> None:
    rng = np.random.default_rng(0)
    n, e = 300, 4
    # binary fractions, so utilities are exact and ties are real ties
    quality = rng.integers(0, 9, size=(n, e)) / 8
    confidence = rng.uniform(size=(n, e))
    est = rng.choice([2.0**-12, 2.0**-11, 2.0**-10, 2.0**-9], size=(n, e))
    arrays = Arrays(("a", "b", "c", "d"), quality, confidence, est,
                    rng.integers(0, 2, size=(n, e)).astype(float), est)
    policy = build_policy(kind)
    if hasattr(policy, "cost_scale"):
        policy = build_policy(kind, {"cost_scale": 2.0**-10})
    point = evaluate_point(policy, arrays, 0.0)
    first = [policy.rank(quality[i], confidence[i], est[i])[0] for i in range(n)]
    expected = np.bincount(first, minlength=e) / n
    assert [point.shares[x] for x in arrays.experts] == pytest.approx(expected.tolist())


def test_prediction_alignment_keeps_the_routers_columns() -> None:
    pred = Prediction(("b", "a"), np.array([[0.2, 0.9]]), np.ones((1, 2)))
    models = ["a", "b", "c"]
    arrays = Arrays.align(pred, models, np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 0.0, 1.0]]),
                          np.array([[1.0, 2.0, 3.0]]))
    assert arrays.est.tolist() == [[2.0, 1.0]] and arrays.scores.tolist() == [[0.0, 1.0]]


def test_suite_router_option_paths_resolve_against_the_suite_file(tiny_suite: Path) -> None:
    tiny_suite.write_text(tiny_suite.read_text().replace(
        "  - {name: prior, kind: prior}\n",
        "  - {name: prior, kind: prior}\n"
        "  - {name: coe, kind: coe, options: {label_files: [labels/l.jsonl]}}\n"))
    suite = load_suite(tiny_suite)
    want = str(tiny_suite.parent / "labels" / "l.jsonl")
    assert suite.routers[1].options["label_files"] == [want]
