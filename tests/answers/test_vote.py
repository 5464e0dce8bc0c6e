"""tally and vote_weight."""

from __future__ import annotations

import math

import pytest

from coe_gateway.answers import Tally, tally, vote_weight


def test_plurality() -> None:
    t = tally(["B", "C", "B"])
    assert t == Tally("B", 2.0, 1.0, 2, 3, (0, 2))
    assert t.margin == 1.0
    assert t.agreement == pytest.approx(2 / 3)


def test_unanimous() -> None:
    t = tally(["42", "42", "42"])
    assert (t.answer, t.support, t.runner_up, t.count, t.winners) == ("42", 3.0, 0.0, 3, (0, 1, 2))
    assert t.agreement == 1.0


def test_tie_goes_to_the_earliest_answer() -> None:
    assert tally(["B", "C"]).answer == "B"
    assert tally(["C", "B"]).answer == "C"
    t = tally(["C", "B", "B", "C"])
    assert (t.answer, t.winners, t.margin) == ("C", (0, 3), 0.0)
    assert tally([None, "D", "E"]).answer == "D"


def test_weights_decide() -> None:
    t = tally(["B", "C", "C"], [3.0, 1.0, 1.5])
    assert (t.answer, t.support, t.runner_up, t.count) == ("B", 3.0, 2.5, 1)
    assert t.margin == pytest.approx(0.5)
    assert t.winners == (0,)


def test_equal_weight_tie_is_deterministic() -> None:
    t = tally(["B", "C", "C", "B"], [1.0, 0.5, 0.5, 0.0])
    assert t.answer == "B" and t.winners == (0, 3)


def test_unparseable_counts_in_total_only() -> None:
    t = tally(["A", None, None])
    assert (t.answer, t.support, t.count, t.total) == ("A", 1.0, 1, 3)
    assert t.agreement == pytest.approx(1 / 3)
    t = tally([None, "A", None], [5.0, 1.0, 5.0])
    assert (t.answer, t.support, t.runner_up) == ("A", 1.0, 0.0)


def test_nothing_parsed() -> None:
    t = tally([None, None])
    assert t == Tally(None, 0.0, 0.0, 0, 2, ())
    assert t.agreement == 0.0 and t.margin == 0.0


def test_empty() -> None:
    t = tally([])
    assert t == Tally(None, 0.0, 0.0, 0, 0, ())
    assert t.agreement == 0.0


def test_runner_up_is_the_second_best() -> None:
    t = tally(["A", "B", "C", "C", "B", "C"], [1.0, 2.0, 1.0, 1.0, 2.0, 1.0])
    assert (t.answer, t.support, t.runner_up) == ("B", 4.0, 3.0)


def test_weights_must_match_keys() -> None:
    with pytest.raises(ValueError):
        tally(["A", "B"], [1.0])


def test_vote_weight_is_log_odds_plus_options() -> None:
    assert vote_weight(0.8, 4) == pytest.approx(math.log(4) + math.log(3))
    assert vote_weight(0.8, 2) == pytest.approx(math.log(4))
    assert vote_weight(0.9, 10) == pytest.approx(math.log(9) + math.log(9))


def test_vote_weight_grows_with_quality() -> None:
    ws = [vote_weight(q) for q in (0.3, 0.5, 0.7, 0.9, 0.97)]
    assert ws == sorted(ws) and len(set(ws)) == len(ws)


def test_vote_weight_is_clipped_and_floored() -> None:
    assert vote_weight(1.0) == vote_weight(0.98) == pytest.approx(math.log(49) + math.log(3))
    assert math.isfinite(vote_weight(1.0))
    assert vote_weight(0.0) == vote_weight(0.1) == 0.05  # never negative
    assert vote_weight(0.25, 4) == 0.05  # chance level weighs ~0: floored
    assert vote_weight(0.5, 2) == 0.05


def test_vote_weight_needs_two_options() -> None:
    with pytest.raises(ValueError):
        vote_weight(0.8, 1)


def test_strong_expert_outvotes_two_weak_ones() -> None:
    strong, weak = vote_weight(0.95), vote_weight(0.4)
    t = tally(["A", "B", "B"], [strong, weak, weak])
    assert t.answer == "A" and t.margin > 0


def test_posterior_is_the_softmax_of_the_supports_over_the_options() -> None:
    import math

    from coe_gateway.answers.vote import posterior

    t = tally(["A", "B", "A"], [1.0, 0.5, 1.0])
    assert t.supports == {"A": 2.0, "B": 0.5}
    expected = math.exp(2.0) / (math.exp(2.0) + math.exp(0.5) + 2 * 1.0)  # 4 options
    assert posterior(t, 4) == pytest.approx(expected)
    assert posterior(tally([None, None]), 4) == 0.0
