"""The prior router: each expert's mean quality, the same for every query.

The honest baseline every learned router must beat. Its prediction ignores the query text;
its confidence is ``max(q, 1 - q)``, the probability that the more likely outcome (good or
bad answer) is the right call, so a cascade over it escalates when an expert is a coin flip.
Trained from routing records (mean score per model) or given per expert in the config
(``quality_prior``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coe_gateway.records import RecordSet
from coe_gateway.routers.base import Prediction, Query, Router


class PriorRouter(Router):
    kind = "prior"
    cheap = True

    def __init__(self, experts: Sequence[str], priors: Mapping[str, float] | None = None) -> None:
        super().__init__(experts)
        priors = dict(priors or {})
        self.priors = np.array([float(priors.get(e, 0.5)) for e in self.experts])  # (E,)

    @classmethod
    def fit(cls, records: RecordSet, experts: Sequence[str] | None = None) -> PriorRouter:
        """Mean observed score of each model (missing scores ignored)."""
        names = list(experts or records.models)
        cols = records.scores[:, [records.models.index(m) for m in names]]  # (N, E)
        means = np.nanmean(cols, axis=0)
        return cls(names, {m: float(v) for m, v in zip(names, means)})

    def predict(self, queries: Sequence[Query]) -> Prediction:
        q = np.empty((len(queries), len(self.experts)))  # (B, E)
        q[:] = self.priors
        return Prediction(self.experts, q, np.maximum(q, 1.0 - q))

    def config(self) -> dict[str, Any]:
        return {"priors": {e: float(p) for e, p in zip(self.experts, self.priors)}}
