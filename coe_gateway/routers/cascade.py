"""The cascade: a confidence-gated policy over any router (registered in
:data:`coe_gateway.policies.POLICY_KINDS` as ``cascade``).

Experts form a ladder by estimated cost, cheapest first. Walking up it, the first expert
whose predicted quality reaches ``target`` *and* whose confidence reaches ``min_confidence``
answers; an expert predicted good but uncertain, or predicted bad, is passed over (the
request escalates). When no expert passes, the expert of highest predicted quality answers.
The ranking's fallbacks continue up the ladder (passing experts by cost), then the rest by
predicted quality.

This is the decision a gateway can make before any answer exists, so the offline evaluator
and the server run it alike; its sweep parameter is ``target``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from coe_gateway.policies import BudgetState, Policy

PASS = 1e6


@dataclass(frozen=True)
class Cascade(Policy):
    kind: ClassVar[str] = "cascade"
    sweep_param: ClassVar[str] = "target"
    target: float = 0.7
    min_confidence: float = 0.6

    def scores(
        self, quality: np.ndarray, confidence: np.ndarray, costs: np.ndarray,
        budget: BudgetState | None,
    ) -> np.ndarray:
        passes = (quality >= self.target) & (confidence >= self.min_confidence)
        cheap = -np.nan_to_num(costs, nan=np.inf)
        # passing experts outrank every other, cheapest first; the rest by predicted quality
        return np.where(passes, PASS + cheap, quality - PASS * passes.any(axis=-1, keepdims=True))
