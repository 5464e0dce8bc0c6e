"""Evaluation suite files: one YAML per data set, validated by pydantic.

A suite names the data (routing records, RouterBench CSV or pickle), the split, the cost
model, the routers to train and the policies to sweep. It is loaded with the same loader as
every other config file (:func:`coe_gateway.config.load_file`), so a bad suite fails naming
the file, the field and the reason. Relative paths resolve against the suite file's
directory, with ``~`` and ``$VARS`` expanded (``eval/mmlu_pro.yaml`` reaches the shared data
as ``../../shared/data/...``). Example::

    name: mmlu_pro
    data:
      paths: [../../shared/data/mmlu_pro/records.jsonl.gz]
    split: {test_fraction: 0.3, seed: 0}
    costs:
      model: recorded-else-tokens
    routers:
      - {name: prior, kind: prior}
    policies:
      - {kind: trade-off, sweep: 50}
      - {kind: cheapest-above-target, sweep: {count: 21, low: 0.0, high: 1.0}}

Adding a router to a suite is one more line under ``routers:`` (``options`` go to the
router's ``fit``; ``path`` loads a saved router instead of training one).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from coe_gateway.config import (RouterSpec, Strict, load_file, resolve_option_paths,
                                 resolve_path)

DEFAULT_TIERS: tuple[tuple[float | None, float], ...] = (
    (4.0, 0.10), (8.6, 0.20), (21.0, 0.30), (41.0, 0.80), (80.0, 0.90), (None, 1.80),
)
"""Hosted-inference price tiers for open models: (up to N billion active parameters, USD per
1M tokens, input and output alike); ``None`` = any size above the previous tier."""


class DataSpec(Strict):
    """Where the records come from.

    paths: one or more files, concatenated (``*.jsonl``/``*.jsonl.gz`` routing records,
        RouterBench ``*.csv`` or ``*.pkl``); ``format: auto`` picks the reader by extension.
    models_json: per-model facts (active parameters, list prices); by default the
        ``models.json`` beside the first data file, when there is one.
    models: evaluate only these models (default: every model in the data).
    attribution: source and licence of the data, copied into every report.
    """

    paths: list[str] = Field(min_length=1)
    format: Literal["auto", "jsonl", "routerbench-csv", "routerbench-pickle"] = "auto"
    models_json: str | None = None
    models: list[str] | None = None
    attribution: str = ""


class SplitSpec(Strict):
    """The source's split where the records carry one (``use_source_split``), else a seeded
    random split with ``test_fraction`` of the records held out. ``group_pattern`` (a regex
    on the record id; its first group, else the whole match, names the group) keeps related
    records on one side, e.g. both turns of an MT-Bench question."""

    test_fraction: float = Field(0.3, gt=0, lt=1)
    seed: int = 0
    use_source_split: bool = True
    group_pattern: str | None = None

    @field_validator("group_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from None
        return pattern


class Tier(Strict):
    up_to_b: float | None = Field(None, gt=0, description="active params (B); null = above")
    usd_per_mtok: float = Field(ge=0)


class CostSpec(Strict):
    """How a query's cost with a model is known.

    model ``recorded-else-tokens``: the cost the data recorded for that query and model where
        there is one, else tokens x price; ``tokens-times-price``: always tokens x price.
    Tokens: prompt = characters of the routing text / ``chars_per_token`` (+ ``image_tokens``
    for a query with an image); output = the query's ``output_chars`` / ``chars_per_token``,
    or that model's mean over the train split where unknown (0 counts as unknown).
    Prices (USD per 1M tokens), first found wins: ``prices`` here, the gateway config's
    expert prices (``gateway_config``), ``models.json``; else the tier of the model's active
    parameters (``active_params_b`` here, else models.json) in ``tiers``.
    """

    model: Literal["recorded-else-tokens", "tokens-times-price"] = "recorded-else-tokens"
    chars_per_token: float = Field(4.0, gt=0)
    default_output_tokens: float | None = Field(
        None, gt=0, description="output tokens of a model with no output_chars at all; "
        "default: the median of the other models' means"
    )
    image_tokens: int = Field(0, ge=0)
    gateway_config: str | None = None
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    active_params_b: dict[str, float] = Field(default_factory=dict)
    tiers: list[Tier] = Field(
        default_factory=lambda: [Tier(up_to_b=b, usd_per_mtok=p) for b, p in DEFAULT_TIERS]
    )

    @field_validator("prices")
    @classmethod
    def _non_negative(cls, prices: dict[str, tuple[float, float]]
                      ) -> dict[str, tuple[float, float]]:
        for model, (pin, pout) in prices.items():
            if pin < 0 or pout < 0:
                raise ValueError(f"price of {model!r} must be >= 0")
        return prices


class SuiteRouter(RouterSpec):
    """A router to evaluate: trained on the train split with ``kind``'s ``fit(train,
    **options)``, or loaded from ``path``. ``train_limit`` fits on a seeded sample of at most
    that many training records (for routers whose training is slow)."""

    train_limit: int | None = Field(None, ge=1)


class Sweep(Strict):
    """Values of the policy's trade-off parameter: explicit ``values``, or ``count`` points
    from ``low`` to ``high`` (``log`` spacing); bounds left out are derived from the data."""

    values: list[float] | None = None
    count: int = Field(50, ge=1, le=10_000)
    low: float | None = None
    high: float | None = None
    log: bool | None = None


class SuitePolicy(Strict):
    """A policy of :mod:`coe_gateway.policies`: ``params`` is its operating point, ``sweep``
    moves its ``sweep_param`` along the cost-quality curve (a count, a list, or a Sweep)."""

    kind: str
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    sweep: Sweep = Sweep()

    @field_validator("sweep", mode="before")
    @classmethod
    def _sweep_shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("sweep must be a count, a list of values or a mapping")
        if isinstance(value, int):
            return {"count": value}
        if isinstance(value, list):
            return {"values": value, "count": max(len(value), 1)}
        return value

    @property
    def label(self) -> str:
        return self.name or self.kind


class SuiteStrategy(Strict):
    """A strategy of :mod:`coe_gateway.strategies` (an answer-aware cascade), run offline
    over the records' ``answers`` with the same objects the gateway serves with
    (:mod:`coe_gateway.eval.offline`), on the predictions of ``routers`` (default: every
    router of the suite). ``params`` is its operating point; ``sweep`` moves ``param``
    (default: the strategy's own ``sweep_param``) over ``values``."""

    kind: str
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    param: str | None = None
    values: list[float] = Field(min_length=1)
    routers: list[str] | None = None

    @property
    def label(self) -> str:
        return self.name or self.kind


class Suite(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    data: DataSpec
    split: SplitSpec = SplitSpec()
    costs: CostSpec = CostSpec()
    routers: list[SuiteRouter] = Field(
        default_factory=lambda: [SuiteRouter(name="prior", kind="prior")], min_length=1
    )
    policies: list[SuitePolicy] = Field(
        default_factory=lambda: [SuitePolicy(kind="trade-off")], min_length=1
    )
    strategies: list[SuiteStrategy] = Field(default_factory=list)
    seed: int = Field(0, description="seed of the random-routing baseline")

    @model_validator(mode="after")
    def _unique_names(self) -> Suite:
        for what, names in (("router", [r.name for r in self.routers]),
                            ("policy", [p.label for p in self.policies]
                             + [st.label for st in self.strategies])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what} names must be unique; repeated: {dupes}")
        known = {r.name for r in self.routers}
        for st in self.strategies:
            missing = sorted(set(st.routers or []) - known)
            if missing:
                raise ValueError(f"strategy {st.label!r} names unknown routers {missing}")
        return self


def load_suite(path: str | Path) -> Suite:
    """Load and validate a suite; every relative path becomes absolute (against the file),
    file paths among the routers' options included."""

    suite = load_file(path, Suite)
    base = Path(path).resolve().parent
    data = suite.data.model_copy(update={
        "paths": [resolve_path(p, base) for p in suite.data.paths],
        "models_json": resolve_path(suite.data.models_json, base),
    })
    costs = suite.costs.model_copy(update={"gateway_config": resolve_path(suite.costs.gateway_config,
                                                                      base)})
    routers = [r.model_copy(update={"path": resolve_path(r.path, base),
                                    "options": resolve_option_paths(r.options, base)})
               for r in suite.routers]
    return suite.model_copy(update={"data": data, "costs": costs, "routers": routers})
