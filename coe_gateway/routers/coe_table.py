"""The category-to-expert table of the Composition-of-Experts router, and how it is chosen.

A table maps each category to one expert, with the figures it was chosen from, and names a
general expert for queries the classifier is unsure of. It is plain data, written readable
into ``router.json`` (``config.table``) where an operator may edit it::

    general_expert: gemini-1.5-pro-002
    min_confidence: 0.5
    categories:
      math: {expert: gemini-1.5-flash-002, quality: 0.625, cost_usd: 4.6e-05, queries: 945}
      ...

Choice (SambaNova's CoE, step two): per category, the expert of highest utility
``quality - cost_weight * cost / 1e-3`` (quality = the expert's mean score on that category,
shrunk towards its overall mean; cost = its mean estimated USD per query there), optionally
under a budget of active parameters:

- ``total``: the experts the table uses, each counted once (what must be hosted), sum to at
  most the budget (billions); chosen greedily by gain in query-weighted utility, then improved
  by single swaps;
- ``average``: the query-weighted mean of the chosen experts' active parameters is at most the
  budget; solved by a Lagrange multiplier on parameters, bisected.

Experts whose active parameters are unknown cannot be used under a parameter budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

COST_SCALE = 1e-3


@dataclass
class CategoryTable:
    """category -> chosen expert (+ the figures behind the choice), and the fallback."""

    general_expert: str
    min_confidence: float = 0.5
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)

    def expert_for(self, category: str | None) -> str:
        entry = self.categories.get(category or "")
        return str(entry["expert"]) if entry else self.general_expert

    def to_dict(self) -> dict[str, Any]:
        return {"general_expert": self.general_expert, "min_confidence": self.min_confidence,
                "categories": self.categories}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], experts: Sequence[str]) -> CategoryTable:
        """Validate an (operator-edited) table: every named expert must be a known one."""
        where = "config.table"
        if not isinstance(data, Mapping) or "general_expert" not in data:
            raise ValueError(f"{where}: needs 'general_expert' and 'categories'")
        known = set(experts)
        if data["general_expert"] not in known:
            raise ValueError(f"{where}.general_expert: {data['general_expert']!r} is not one of "
                             f"the router's experts {sorted(known)}")
        cats = data.get("categories") or {}
        if not isinstance(cats, Mapping):
            raise ValueError(f"{where}.categories: must be a mapping of category -> entry")
        for name, entry in cats.items():
            if not isinstance(entry, Mapping) or entry.get("expert") not in known:
                got = entry.get("expert") if isinstance(entry, Mapping) else entry
                raise ValueError(f"{where}.categories.{name}.expert: {got!r} is not one of the "
                                 f"router's experts")
        conf = float(data.get("min_confidence", 0.5))
        if not 0.0 <= conf <= 1.0:
            raise ValueError(f"{where}.min_confidence: must be in 0..1, got {conf}")
        return cls(str(data["general_expert"]), conf, {str(k): dict(v) for k, v in cats.items()})


@dataclass(frozen=True)
class Budget:
    """A cap on active parameters (billions): ``kind`` is ``total`` or ``average``."""

    kind: str
    value: float

    @classmethod
    def parse(cls, value: Mapping[str, Any] | None) -> Budget | None:
        if not value:
            return None
        kind, cap = value.get("kind", "average"), value.get("value")
        if kind not in ("total", "average") or not isinstance(cap, (int, float)) or cap <= 0:
            raise ValueError(f"param_budget: need kind total|average and value > 0, got {value}")
        return cls(str(kind), float(cap))


def _best(utility: np.ndarray, allowed: np.ndarray) -> npt.NDArray[np.intp]:
    """(C,) argmax over allowed experts of utility (C, E)."""
    pick: npt.NDArray[np.intp] = np.where(allowed[None, :], utility, -np.inf).argmax(axis=1)
    return pick


def _average(utility: np.ndarray, weights: np.ndarray, params: np.ndarray, cap: float,
             allowed: np.ndarray) -> np.ndarray:
    lo, hi = 0.0, 1.0
    mean: Callable[[np.ndarray], float] = (  # noqa: E731
        lambda pick: float(weights @ params[pick] / weights.sum()))
    while mean(_best(utility - hi * params, allowed)) > cap and hi < 1e6:
        lo, hi = hi, hi * 4
    for _ in range(60):
        mid = (lo + hi) / 2
        if mean(_best(utility - mid * params, allowed)) > cap:
            lo = mid
        else:
            hi = mid
    pick = _best(utility - hi * params, allowed)
    if mean(pick) > cap:
        raise ValueError(f"param_budget: no table has mean active params <= {cap}B")
    return pick


def _value(utility: np.ndarray, weights: np.ndarray, chosen: list[int]) -> float:
    return float(weights @ utility[:, chosen].max(axis=1)) if chosen else -np.inf


def _total(utility: np.ndarray, weights: np.ndarray, params: np.ndarray, cap: float,
           allowed: np.ndarray) -> np.ndarray:
    cands = [int(e) for e in np.flatnonzero(allowed) if params[e] <= cap]
    if not cands:
        raise ValueError(f"param_budget: no expert fits in {cap}B active parameters")
    chosen: list[int] = []
    while True:  # greedy by gain
        room = cap - sum(params[chosen])
        gains = [(_value(utility, weights, chosen + [e]), e) for e in cands
                 if e not in chosen and params[e] <= room]
        if not gains or (chosen and max(gains)[0] <= _value(utility, weights, chosen)):
            break
        chosen.append(max(gains)[1])
    improved = True
    while improved:  # single swaps
        improved = False
        for i, out in enumerate(list(chosen)):
            for e in cands:
                trial = chosen[:i] + [e] + chosen[i + 1:]
                if e in chosen or sum(params[trial]) > cap:
                    continue
                if _value(utility, weights, trial) > _value(utility, weights, chosen) + 1e-12:
                    chosen, improved = trial, True
                    break
    mask = np.zeros_like(allowed)
    mask[chosen] = True
    return _best(utility, mask)


def choose_experts(
    quality: np.ndarray, weights: np.ndarray, cost: np.ndarray | None = None,
    params: np.ndarray | None = None, budget: Budget | None = None, cost_weight: float = 0.0,
) -> np.ndarray:
    """(C,) expert index per category from quality (C, E), query counts (C,), optional cost
    (C, E) USD and active params (E,) (NaN = unknown)."""
    utility = quality - (cost_weight * cost / COST_SCALE if cost is not None else 0.0)
    allowed = np.ones(quality.shape[1], dtype=bool)
    if budget is None:
        return _best(utility, allowed)
    if params is None:
        raise ValueError("param_budget: needs the experts' active parameters "
                         "(active_params_b or models_json)")
    allowed = np.isfinite(params)
    p = np.nan_to_num(params, nan=np.inf)
    w = np.maximum(weights.astype(np.float64), 1e-9)
    if budget.kind == "average":
        return _average(utility, w, np.where(allowed, p, 0.0), budget.value, allowed)
    return _total(utility, w, p, budget.value, allowed)


def build_table(
    categories: Sequence[str], experts: Sequence[str], quality: np.ndarray, counts: np.ndarray,
    cost: np.ndarray | None = None, params: np.ndarray | None = None,
    budget: Budget | None = None, cost_weight: float = 0.0, min_confidence: float = 0.5,
    general_expert: str | None = None,
) -> CategoryTable:
    """The table for ``categories`` (rows of quality/cost, counts = queries per category);
    a category without results is left out, so the general expert answers it."""
    pick = choose_experts(quality, counts, cost, params, budget, cost_weight)
    if general_expert is None:
        overall = (counts @ quality) / max(float(counts.sum()), 1e-9)  # (E,)
        used = sorted(set(pick.tolist()))
        general_expert = experts[max(used, key=lambda e: overall[e])]
    entries = {}
    for c, name in enumerate(categories):
        if counts[c] <= 0:
            continue  # no results in this category: the general expert answers it
        e = int(pick[c])
        entry: dict[str, Any] = {"expert": experts[e], "quality": round(float(quality[c, e]), 4),
                                 "queries": int(counts[c])}
        if cost is not None:
            entry["cost_usd"] = float(f"{cost[c, e]:.4g}")
        if params is not None and np.isfinite(params[e]):
            entry["active_params_b"] = float(params[e])
        entries[name] = entry
    return CategoryTable(general_expert, min_confidence, entries)
