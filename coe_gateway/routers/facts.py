"""Per-model facts a router may train with: estimated cost per query and active parameters.

Costs follow the evaluation suite's cost model (:mod:`coe_gateway.eval.costs`): prompt
tokens (characters / 4) times the input price plus the model's mean output tokens times the
output price; prices from ``prices`` (USD per 1M tokens ``[input, output]``), else
``models.json``'s list price, else the hosted-inference tier of the active parameters. Where a
model has no price at all, costs are unknown (None) and choices use quality alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coe_gateway.errors import ConfigError
from coe_gateway.records import RecordSet


def load_facts(models_json: str | None) -> dict[str, dict[str, Any]]:
    """``models.json`` as a dict ({} when no path)."""
    if not models_json:
        return {}
    from coe_gateway.eval.datasets import load_models_json

    return load_models_json(models_json)


def active_params(experts: Sequence[str], facts: Mapping[str, Mapping[str, Any]],
                  override: Mapping[str, float] | None = None) -> np.ndarray:
    """(E,) active parameters in billions, NaN where unknown."""
    over = dict(override or {})
    out = []
    for e in experts:
        value = over.get(e, facts.get(e, {}).get("active_params_b"))
        out.append(np.nan if value is None else float(value))
    return np.array(out, dtype=np.float64)


def estimated_costs(
    records: RecordSet, experts: Sequence[str], facts: Mapping[str, Mapping[str, Any]],
    prices: Mapping[str, Sequence[float]] | None = None,
    override_params: Mapping[str, float] | None = None,
) -> np.ndarray | None:
    """(N, E) estimated USD per query, or None when some expert cannot be priced."""
    from coe_gateway.eval.costs import CostModel, resolve_prices
    from coe_gateway.eval.suite import CostSpec

    spec = CostSpec(model="tokens-times-price",
                    prices={k: tuple(map(float, v)) for k, v in (prices or {}).items()},
                    active_params_b=dict(override_params or {}))
    sub = records.select_models(list(experts))
    try:
        resolved = resolve_prices(list(experts), spec, facts)
    except ConfigError:
        return None
    return CostModel.fit(spec, resolved, sub).estimate(sub)
