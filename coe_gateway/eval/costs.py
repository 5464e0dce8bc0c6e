"""The cost of answering a query with a model, two ways.

*Estimated* cost is what the policy decides with, knowable before the call: prompt tokens
(characters of the routing text / ``chars_per_token``, plus ``image_tokens`` when the query
has an image) times the input price, plus the model's mean output tokens on the train split
times the output price.

*Realised* cost is what the metrics count: the cost the data recorded for that query and
model (RouterBench's ``model|total_cost``) where the suite's cost model is
``recorded-else-tokens`` and there is one; else the same tokens times price with the query's
own output length (``output_chars``; 0 or missing counts as unknown and takes the model's
mean).

Prices, USD per 1M tokens, first found wins: the suite's ``costs.prices``, the gateway
config's expert prices, ``models.json``'s ``price_usd_per_mtok``; else the model's active
parameters (suite, then models.json) priced by the hosted-inference tiers
(:data:`coe_gateway.eval.suite.DEFAULT_TIERS` unless the suite gives others).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from coe_gateway.errors import ConfigError
from coe_gateway.eval.suite import CostSpec, Tier
from coe_gateway.records import RecordSet

FALLBACK_OUTPUT_TOKENS = 256.0


@dataclass(frozen=True)
class ModelPrice:
    """USD per 1M tokens and where the figure came from."""

    input_per_mtok: float
    output_per_mtok: float
    source: str


def tier_price(active_params_b: float, tiers: Sequence[Tier]) -> float:
    """USD per 1M tokens of an open model with ``active_params_b`` billion active parameters."""
    for tier in tiers:
        if tier.up_to_b is None or active_params_b <= tier.up_to_b:
            return tier.usd_per_mtok
    raise ValueError(f"no price tier covers {active_params_b}B active parameters")


def gateway_prices(config_path: str | None) -> dict[str, ModelPrice]:
    """Expert prices from a gateway config file (by expert name and upstream model name)."""
    if config_path is None:
        return {}
    from coe_gateway.config import load_config

    out: dict[str, ModelPrice] = {}
    for e in load_config(config_path).experts:
        price = ModelPrice(e.price.input_per_mtok, e.price.output_per_mtok, "gateway config")
        out.setdefault(e.upstream_model, price)
        out[e.name] = price
    return out


def resolve_prices(
    models: Sequence[str], spec: CostSpec, models_json: Mapping[str, Mapping[str, Any]],
    suite_path: str = "<suite>",
) -> dict[str, ModelPrice]:
    """The price of every model (ConfigError naming the model when none can be found)."""
    from_gateway = gateway_prices(spec.gateway_config)
    out: dict[str, ModelPrice] = {}
    for m in models:
        facts = models_json.get(m, {})
        listed = facts.get("price_usd_per_mtok")
        params = spec.active_params_b.get(m, facts.get("active_params_b"))
        if m in spec.prices:
            out[m] = ModelPrice(float(spec.prices[m][0]), float(spec.prices[m][1]),
                                "suite price table")
        elif m in from_gateway:
            out[m] = from_gateway[m]
        elif listed is not None:
            out[m] = ModelPrice(float(listed[0]), float(listed[1]), "models.json list price")
        elif params is not None:
            p = tier_price(float(params), spec.tiers)
            out[m] = ModelPrice(p, p, f"tier of {float(params):g}B active params")
        else:
            raise ConfigError(suite_path, f"costs.prices.{m}", "no price for this model: give "
                              "costs.prices or costs.active_params_b for it")
    return out


@dataclass
class CostModel:
    """Estimated and realised per-query costs for a fixed list of models.

    price:            (M, 2) USD per 1M tokens, [input, output]
    mean_output_tokens: (M,) from the train split
    """

    models: list[str]
    price: np.ndarray
    mean_output_tokens: np.ndarray
    chars_per_token: float
    image_tokens: int
    use_recorded: bool

    @classmethod
    def fit(cls, spec: CostSpec, prices: Mapping[str, ModelPrice], train: RecordSet) -> CostModel:
        """Prices as given; mean output tokens per model from the train split."""
        price = np.array([[prices[m].input_per_mtok, prices[m].output_per_mtok]
                          for m in train.models], dtype=np.float64)  # (M, 2)
        return cls(
            models=list(train.models), price=price,
            mean_output_tokens=mean_output_tokens(train, spec.chars_per_token,
                                                  spec.default_output_tokens),
            chars_per_token=spec.chars_per_token, image_tokens=spec.image_tokens,
            use_recorded=spec.model == "recorded-else-tokens",
        )

    def prompt_tokens(self, records: RecordSet) -> npt.NDArray[np.float64]:
        """(N,) prompt tokens of each query."""
        extra = records.extra_text or [""] * len(records)
        chars = np.array([len(p) + (len(x) + 1 if x else 0)
                          for p, x in zip(records.prompts, extra)], dtype=np.float64)
        images: npt.NDArray[np.bool_] = np.array(
            [bool(im) for im in (records.images or [None] * len(records))])
        return chars / self.chars_per_token + self.image_tokens * images

    def _price(self, prompt: np.ndarray, output: np.ndarray) -> np.ndarray:
        # prompt (N, 1), output (N, M) or (1, M) -> (N, M) USD
        usd: np.ndarray = (prompt * self.price[:, 0] + output * self.price[:, 1]) / 1e6
        return usd

    def estimate(self, records: RecordSet) -> np.ndarray:
        """(N, M) USD the policy sees: prompt tokens and the model's mean output tokens."""
        return self._price(self.prompt_tokens(records)[:, None], self.mean_output_tokens[None, :])

    def realised(self, records: RecordSet) -> np.ndarray:
        """(N, M) USD the metrics count: recorded cost, else tokens with this query's output."""
        out = self.mean_output_tokens[None, :].repeat(len(records), axis=0)  # (N, M)
        if records.output_chars is not None:
            known = np.isfinite(records.output_chars) & (records.output_chars > 0)
            out = np.where(known, records.output_chars / self.chars_per_token, out)
        cost = self._price(self.prompt_tokens(records)[:, None], out)
        if self.use_recorded and records.costs is not None:
            cost = np.where(np.isfinite(records.costs), records.costs, cost)
        return cost

    def describe(self, prices: Mapping[str, ModelPrice]) -> dict[str, Any]:
        return {
            m: {"input_per_mtok": prices[m].input_per_mtok,
                "output_per_mtok": prices[m].output_per_mtok, "source": prices[m].source,
                "mean_output_tokens": round(float(t), 1)}
            for m, t in zip(self.models, self.mean_output_tokens)
        }


def mean_output_tokens(
    train: RecordSet, chars_per_token: float, default: float | None
) -> np.ndarray:
    """(M,) mean output tokens per model over the train split (0 = unknown). A model with no
    output length at all gets ``default``, else the median of the other models' means."""
    n_models = len(train.models)
    if train.output_chars is None:
        means = np.full(n_models, np.nan)
    else:
        chars = np.where(train.output_chars > 0, train.output_chars, np.nan)  # (N, M)
        counts = np.isfinite(chars).sum(axis=0)
        means = np.where(counts > 0, np.nansum(chars, axis=0) / np.maximum(counts, 1), np.nan)
        means = means / chars_per_token
    missing = ~np.isfinite(means)
    if missing.any():
        fill = default if default is not None else (
            float(np.median(means[~missing])) if (~missing).any() else FALLBACK_OUTPUT_TOKENS)
        means = np.where(missing, fill, means)
    return means
