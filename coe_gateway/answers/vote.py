"""Voting over answer keys: pure functions a cascade uses to accept an answer or escalate.

:func:`tally` sums the weight behind each key; :func:`vote_weight` turns an expert's
predicted accuracy into its weight.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Q_MIN, Q_MAX = 0.02, 0.98
MIN_WEIGHT = 0.05


@dataclass(frozen=True)
class Tally:
    """The outcome of a vote over answer keys."""

    answer: str | None  # the winning key (None when no answer parsed)
    support: float  # total weight behind it
    runner_up: float  # weight of the second answer
    count: int  # how many answers gave it
    total: int  # answers counted (parseable or not)
    winners: tuple[int, ...]  # indexes (into the input) of the answers that gave it
    supports: Mapping[str, float] = field(default_factory=dict, compare=False)  # per key

    @property
    def margin(self) -> float:
        """How far the winner leads the second answer (weight)."""
        return self.support - self.runner_up

    @property
    def agreement(self) -> float:
        """The share of all answers that gave the winner (0 when there are none)."""
        return self.count / self.total if self.total else 0.0


def tally(keys: Sequence[str | None], weights: Sequence[float] | None = None) -> Tally:
    """The plurality of ``keys`` by total weight (one each by default).

    A None key (an answer that could not be read) counts in ``total`` but supports nothing.
    Equal support is won by the key given first (the lowest index): deterministic."""
    if weights is None:
        weights = [1.0] * len(keys)
    elif len(weights) != len(keys):
        raise ValueError(f"{len(weights)} weights for {len(keys)} keys")
    support: dict[str, float] = {}  # insertion order: first appearance
    voters: dict[str, list[int]] = {}
    for i, (key, w) in enumerate(zip(keys, weights)):
        if key is not None:
            support[key] = support.get(key, 0.0) + w
            voters.setdefault(key, []).append(i)
    if not support:
        return Tally(None, 0.0, 0.0, 0, len(keys), ())
    ranked = sorted(support, key=lambda k: -support[k])  # stable: ties keep first appearance
    best = ranked[0]
    runner_up = support[ranked[1]] if len(ranked) > 1 else 0.0
    return Tally(best, support[best], runner_up, len(voters[best]), len(keys),
                 tuple(voters[best]), support)


def posterior(t: Tally, options: int) -> float:
    """The probability that the tally's answer is right when the weights are log-odds
    (:func:`vote_weight`): the softmax of every answer's support over ``options`` possible
    answers, an answer nobody gave counting 0; 0 when no answer could be read."""
    if t.answer is None:
        return 0.0
    top = t.support
    z = sum(math.exp(v - top) for v in t.supports.values()) + \
        max(options - len(t.supports), 0) * math.exp(-top)
    return 1.0 / z


def vote_weight(quality: float, options: int = 4) -> float:
    """The weight of an expert of predicted accuracy ``quality`` in a plurality vote.

    For independent voters the decision rule that is most often right weights each vote by
    its log-odds, ``log(q / (1 - q))`` (Nitzan & Paroush 1982, for two options). With
    ``options`` answers and a wrong voter spreading its errors evenly over the
    ``options - 1`` wrong ones (the symmetric confusion matrix of Dawid & Skene 1979), the
    likelihood ratio of a vote for an option being right is ``q (options - 1) / (1 - q)``,
    hence ``log(q / (1 - q)) + log(options - 1)``: a voter no better than chance
    (``q = 1 / options``) weighs 0. ``q`` is clipped to [0.02, 0.98] (a predicted accuracy of
    0 or 1 would weigh infinitely), and the weight is floored at 0.05: a negative weight
    would vote *against* an answer, meaningless when its errors are spread over unknown
    options, so a weak expert still counts a little (and breaks ties among equals).
    """
    if options < 2:
        raise ValueError(f"a vote needs at least 2 options, got {options}")
    q = min(max(quality, Q_MIN), Q_MAX)
    return max(math.log(q / (1.0 - q)) + math.log(options - 1), MIN_WEIGHT)
