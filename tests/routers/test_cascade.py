from __future__ import annotations

import numpy as np

from coe_gateway.policies import build_policy

COSTS = np.array([1.0, 2.0, 3.0])


def test_cascade_answers_with_the_cheapest_sure_expert() -> None:
    p = build_policy("cascade", {"target": 0.6, "min_confidence": 0.6})
    q, c = np.array([0.65, 0.7, 0.9]), np.array([0.5, 0.9, 0.95])
    # expert 0 is good enough but unsure -> escalate to 1; fallbacks go up the ladder
    assert p.rank(q, c, COSTS) == [1, 2, 0]


def test_cascade_escalates_to_the_best_when_none_passes() -> None:
    p = build_policy("cascade", {"target": 0.95})
    q, c = np.array([0.65, 0.7, 0.9]), np.array([0.9, 0.9, 0.9])
    assert p.rank(q, c, COSTS)[0] == 2


def test_cascade_batch_matches_rank() -> None:
    p = build_policy("cascade", {"target": 0.6, "min_confidence": 0.6})
    q = np.array([[0.65, 0.7, 0.9], [0.2, 0.3, 0.4]])
    c = np.array([[0.9, 0.9, 0.9], [0.9, 0.9, 0.9]])
    got = p.choose_batch(q, c, np.tile(COSTS, (2, 1)))
    assert got.tolist() == [p.rank(q[i], c[i], COSTS)[0] for i in range(2)] == [0, 2]
