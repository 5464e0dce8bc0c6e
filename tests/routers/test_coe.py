from __future__ import annotations

import json

import numpy as np
import pytest

from coe_gateway.routers.base import Query
from coe_gateway.routers.coe import CoERouter, read_labelled
from coe_gateway.routers.coe_table import Budget, CategoryTable, build_table, choose_experts
from coe_gateway.routers.registry import load_router

# three categories x three experts; params 2B, 8B, 70B
Q = np.array([[0.5, 0.6, 0.9],
              [0.7, 0.72, 0.8],
              [0.3, 0.9, 0.6]])
W = np.array([10.0, 10.0, 10.0])
P = np.array([2.0, 8.0, 70.0])


def test_table_without_budget_is_the_best_per_category() -> None:
    assert choose_experts(Q, W).tolist() == [2, 2, 1]


def test_cost_weight_trades_quality_for_cost() -> None:
    cost = np.tile([1e-4, 2e-4, 1e-3], (3, 1))
    # utility = q - cost / 1e-3: experts lose 0.1, 0.2 and 1.0 points
    assert choose_experts(Q, W, cost, cost_weight=1.0).tolist() == [0, 0, 1]


def test_average_param_budget() -> None:
    # mean params <= 30B: at most one category can use the 70B expert; category 0 gains most
    pick = choose_experts(Q, W, params=P, budget=Budget("average", 30.0))
    assert pick.tolist() == [2, 1, 1]
    assert (W @ P[pick]) / W.sum() <= 30.0


def test_total_param_budget_counts_each_expert_once() -> None:
    pick = choose_experts(Q, W, params=P, budget=Budget("total", 10.0))
    assert set(pick.tolist()) <= {0, 1} and pick.tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="no expert fits"):
        choose_experts(Q, W, params=P, budget=Budget("total", 1.0))


def test_unknown_params_are_excluded_under_a_budget() -> None:
    params = np.array([2.0, np.nan, 70.0])
    pick = choose_experts(Q, W, params=params, budget=Budget("average", 100.0))
    assert 1 not in pick.tolist()


def test_table_validation_names_the_field() -> None:
    table = build_table(["a", "b", "c"], ["x", "y", "z"], Q, W)
    assert table.general_expert == "z"
    data = table.to_dict()
    data["categories"]["b"]["expert"] = "nobody"
    with pytest.raises(ValueError, match=r"categories\.b\.expert"):
        CategoryTable.from_dict(data, ["x", "y", "z"])


def test_labelled_file_errors_name_line(tmp_path) -> None:
    f = tmp_path / "labels.jsonl"
    f.write_text('{"prompt": "hi", "category": "chat"}\n{"prompt": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"labels.jsonl:2"):
        read_labelled([str(f)])


def test_coe_router_follows_the_table_and_falls_back(train_test, encoder, tmp_path) -> None:
    train, test = train_test
    router = CoERouter.fit(train, encoder=encoder)
    law = Query("any text", category="law")
    pred = router.predict([law])
    pick = router.table.expert_for("law")
    assert pred.experts[int(pred.quality[0].argmax())] == pick
    # an operator edits the table in router.json: routing follows
    d = router.save(tmp_path / "coe")
    meta = json.loads((d / "router.json").read_text())
    other = next(e for e in router.experts if e != pick)
    meta["config"]["table"]["categories"]["law"]["expert"] = other
    meta["config"]["table"]["min_confidence"] = 1.01 - 1e-9
    (d / "router.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="min_confidence"):
        load_router(d)
    meta["config"]["table"]["min_confidence"] = 1.0
    (d / "router.json").write_text(json.dumps(meta))
    edited = load_router(d)
    q = edited.predict([law]).quality[0]
    assert edited.experts[int(q.argmax())] == other
    # an unlabelled query: classifier confidence < 1.0 -> the general expert
    q = edited.predict([Query(test.prompts[0])]).quality[0]
    assert edited.experts[int(q.argmax())] == edited.table.general_expert


def test_coe_soft_mode_mixes_category_qualities(train_test, encoder) -> None:
    train, test = train_test
    router = CoERouter.fit(train, encoder=encoder, mode="soft", trust_query_category=False)
    probs = router.category_probs(test.queries())
    assert np.allclose(probs.sum(axis=1), 1.0)
    pred = router.predict(test.queries())
    assert np.allclose(pred.quality, probs @ router.cat_quality)


def test_coe_fit_under_an_average_param_budget(train_test, encoder, mmlu_models_json) -> None:
    train, _ = train_test
    router = CoERouter.fit(train, encoder=encoder, models_json=str(mmlu_models_json),
                           param_budget={"kind": "average", "value": 40})
    entries = router.table.categories.values()
    # Gemini models have no known active parameters: excluded under a parameter budget
    assert all(not e["expert"].startswith("gemini") for e in entries)
    share = sum(e["queries"] * e["active_params_b"] for e in entries)
    assert share / sum(e["queries"] for e in entries) <= 40
    assert all("cost_usd" in e for e in entries)
