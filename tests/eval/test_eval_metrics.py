"""Every metric on small cases whose answer is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coe_gateway.eval import metrics

# -- one model ------------------------------------------------------------------------------


def test_one_model_everything_collapses_to_its_point() -> None:
    scores = np.array([[1.0], [0.0], [1.0], [1.0]])
    costs = np.array([[2.0], [2.0], [2.0], [2.0]])
    choice = np.zeros(4, dtype=int)
    assert metrics.accuracy(scores, choice) == 0.75
    assert metrics.mean_cost(costs, choice) == 2.0
    assert list(metrics.oracle_choice(scores, costs)) == [0, 0, 0, 0]
    hull = metrics.nondecreasing_convex_hull(np.array([2.0]), np.array([0.75]))
    assert hull.tolist() == [[2.0, 0.75]]
    assert metrics.aiq(hull, 2.0, 2.0) == 0.75
    assert metrics.mmr_summary(np.array([2.0]), np.array([0.75]), 0.75, 2.0) == {
        "nauc": 0.75, "ps": 0.75, "qnc": 1.0}
    assert metrics.match_cost_fraction(hull, 0.75, 2.0) == 1.0
    assert math.isnan(metrics.apgr(np.array([0.0]), np.array([0.75]), 0.75, 0.75))
    assert math.isnan(metrics.cpt(np.array([0.0]), np.array([0.75]), 0.75, 0.75, 0.5))


# -- two models: weak (cost 1, 0.5), strong (cost 3, 0.9), a router in between ---------------

COST = np.array([1.0, 2.0, 3.0])
ACC = np.array([0.5, 0.8, 0.9])
SHARE = np.array([0.0, 0.5, 1.0])  # share of calls to the strong model


def test_two_models_aiq_is_the_mean_height_of_the_hull() -> None:
    hull = metrics.nondecreasing_convex_hull(COST, ACC)
    assert hull.tolist() == [[1.0, 0.5], [2.0, 0.8], [3.0, 0.9]]
    # (0.5 + 0.8) / 2 + (0.8 + 0.9) / 2 = 1.5 over a range of 2
    assert metrics.aiq(hull, 1.0, 3.0) == pytest.approx(0.75)
    # the weak/strong pair alone: the straight line, mean 0.7
    pair = metrics.nondecreasing_convex_hull(np.array([1.0, 3.0]), np.array([0.5, 0.9]))
    assert metrics.aiq(pair, 1.0, 3.0) == pytest.approx(0.7)


def test_two_models_apgr_and_cpt() -> None:
    # PGR = 0, 0.75, 1 at x = 0, 0.5, 1: area 0.5 * (0 + 0.75) / 2 + 0.5 * (0.75 + 1) / 2
    assert metrics.apgr(SHARE, ACC, 0.5, 0.9) == pytest.approx(0.625)
    assert metrics.cpt(SHARE, ACC, 0.5, 0.9, 0.5) == pytest.approx(1 / 3)
    assert metrics.cpt(SHARE, ACC, 0.5, 0.9, 0.8) == pytest.approx(0.6)
    # random mixing of the two models recovers the gap linearly: APGR 0.5, CPT(p) = p
    line = np.array([0.0, 1.0])
    assert metrics.apgr(line, np.array([0.5, 0.9]), 0.5, 0.9) == pytest.approx(0.5)
    assert metrics.cpt(line, np.array([0.5, 0.9]), 0.5, 0.9, 0.8) == pytest.approx(0.8)
    # never reaching the target -> NaN
    assert math.isnan(metrics.cpt(np.array([0.0, 1.0]), np.array([0.5, 0.6]), 0.5, 0.9, 0.5))


def test_apgr_clips_x_and_holds_the_ends_flat() -> None:
    # one point at x = 0.5 with PGR 1: flat over [0, 1]
    assert metrics.apgr(np.array([0.5]), np.array([0.9]), 0.5, 0.9) == pytest.approx(1.0)
    # a point beyond the strong model's cost counts at x = 1
    assert metrics.apgr(np.array([0.0, 2.0]), np.array([0.5, 0.9]), 0.5, 0.9) == \
        pytest.approx(0.5)


def test_two_models_mmr_summary() -> None:
    m = metrics.mmr_summary(COST, ACC, best_quality=0.9, best_cost=3.0)
    assert m["nauc"] == pytest.approx(0.75)  # 1.5 / (3 - 1)
    assert m["ps"] == pytest.approx(0.9)
    assert m["qnc"] == pytest.approx(1.0)


def test_dominated_and_concave_points() -> None:
    cost = np.array([1.0, 2.0, 2.5, 3.0])
    acc = np.array([0.5, 0.55, 0.52, 0.9])
    # (2, 0.55) lies under the chord (1, .5) - (3, .9); (2.5, .52) is dominated
    hull = metrics.nondecreasing_convex_hull(cost, acc)
    assert hull.tolist() == [[1.0, 0.5], [3.0, 0.9]]
    assert metrics.aiq(hull, 1.0, 3.0) == pytest.approx(0.7)
    front = metrics.pareto_frontier(cost, acc)
    assert front.tolist() == [[1.0, 0.5], [2.0, 0.55], [3.0, 0.9]]
    # frontier area: (0.5 + 0.55) / 2 + (0.55 + 0.9) / 2 = 1.25 over 2
    assert metrics.mmr_summary(cost, acc, 0.9, 3.0)["nauc"] == pytest.approx(0.625)


def test_hull_stops_at_the_best_point_and_aiq_holds_it() -> None:
    hull = metrics.nondecreasing_convex_hull(np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.9, 0.7]))
    assert hull.tolist() == [[1.0, 0.5], [2.0, 0.9]]
    # integral: 0.7 on [1, 2] plus 0.9 on [2, 3], over 2
    assert metrics.aiq(hull, 1.0, 3.0) == pytest.approx(0.8)


def test_aiq_counts_zero_below_the_cheapest_point() -> None:
    hull = metrics.nondecreasing_convex_hull(np.array([2.0, 3.0]), np.array([0.8, 0.9]))
    assert metrics.aiq(hull, 1.0, 3.0) == pytest.approx(0.85 / 2)


def test_cost_to_match_interpolates_on_the_hull_qnc_does_not() -> None:
    cost, acc = np.array([1.0, 3.0]), np.array([0.5, 0.9])
    hull = metrics.nondecreasing_convex_hull(cost, acc)
    # the best single model: quality 0.8 at cost 4; the hull reaches 0.8 at 1 + 0.75 * 2
    assert metrics.match_cost_fraction(hull, 0.8, 4.0) == pytest.approx(2.5 / 4)
    assert metrics.mmr_summary(cost, acc, 0.8, 4.0)["qnc"] == pytest.approx(3.0 / 4)
    assert metrics.match_cost_fraction(hull, 0.95, 4.0) == math.inf
    assert metrics.mmr_summary(cost, acc, 0.95, 4.0)["qnc"] == math.inf


# -- the oracle and random routing -------------------------------------------------------


def test_oracle_takes_the_best_model_and_the_cheapest_among_ties() -> None:
    scores = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [np.nan, 0.0]])
    costs = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 2.0], [1.0, 2.0]])
    choice = metrics.oracle_choice(scores, costs)
    assert choice.tolist() == [0, 1, 1, 0]  # query 4: both 0 (missing = 0), cheapest
    assert metrics.accuracy(scores, choice) == 0.75
    assert metrics.mean_cost(costs, choice) == pytest.approx((1 + 2 + 2 + 1) / 4)


def test_missing_score_and_no_choice_count_as_zero() -> None:
    scores = np.array([[np.nan, 1.0], [1.0, 1.0]])
    costs = np.array([[5.0, 1.0], [5.0, 1.0]])
    assert metrics.accuracy(scores, np.array([0, -1])) == 0.0
    assert metrics.mean_cost(costs, np.array([0, -1])) == 2.5


def test_random_routing_is_seeded() -> None:
    a = metrics.random_choice(1000, 3, seed=7)
    assert np.array_equal(a, metrics.random_choice(1000, 3, seed=7))
    assert not np.array_equal(a, metrics.random_choice(1000, 3, seed=8))
    assert set(a.tolist()) == {0, 1, 2}
