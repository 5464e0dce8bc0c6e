"""Running a suite: data -> split -> costs -> baselines -> routers x policies -> metrics.

``run_suite(path, out_dir)`` is what ``coe-gateway eval SUITE.yaml`` calls; it returns a
:class:`SuiteResult` and, given ``out_dir``, writes ``results.json``, ``report.md`` and the
cost-quality PNGs there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress, TaskID

from coe_gateway.errors import ConfigError
from coe_gateway.eval import metrics
from coe_gateway.eval.costs import CostModel, ModelPrice, resolve_prices
from coe_gateway.eval.datasets import (
    default_models_json,
    load_models_json,
    load_records,
    split_indices,
)
from coe_gateway.eval.predictions import PredictionStore, run_router
from coe_gateway.eval.offline import strategy_point, sweep_strategy
from coe_gateway.eval.suite import Suite, SuitePolicy, SuiteStrategy, load_suite
from coe_gateway.eval.sweep import (
    Arrays,
    Point,
    evaluate_point,
    finite_or_none,
    sweep,
    sweep_values,
)
from coe_gateway.policies import build_policy
from coe_gateway.records import RecordSet


@dataclass
class Prepared:
    """The suite's data, split and costs. est/real/scores: (N_test, M)."""

    suite: Suite
    suite_path: str
    records: RecordSet
    train: RecordSet
    test: RecordSet
    split_how: str
    prices: dict[str, ModelPrice]
    cost_model: CostModel
    est: np.ndarray
    real: np.ndarray
    scores: np.ndarray


def prepare(suite: Suite, suite_path: str, eval_all: bool = False) -> Prepared:
    """Load the records, split them, price every model and cost every test query.
    ``eval_all`` (benchmarks only) trains and evaluates on every record."""
    records = load_records(suite.data.paths, suite.data.format)
    if suite.data.models is not None:
        unknown = [m for m in suite.data.models if m not in records.models]
        if unknown:
            raise ConfigError(suite_path, "data.models", f"not in the data: {unknown}")
        records = records.select_models(suite.data.models)
    sp = suite.split
    train_idx, test_idx, how = split_indices(records, sp.test_fraction, sp.seed,
                                             sp.use_source_split, sp.group_pattern)
    train, test = records.subset(train_idx), records.subset(test_idx)
    if eval_all:
        train, test, how = records, records, "all records (benchmark: train = test)"
    models_json = load_models_json(suite.data.models_json or default_models_json(suite.data.paths))
    prices = resolve_prices(records.models, suite.costs, models_json, suite_path)
    cost_model = CostModel.fit(suite.costs, prices, train)
    return Prepared(suite, suite_path, records, train, test, how, prices, cost_model,
                    est=cost_model.estimate(test), real=cost_model.realised(test),
                    scores=np.nan_to_num(test.scores, nan=0.0))


@dataclass
class Baseline:
    name: str
    kind: str  # single | oracle | random
    accuracy: float
    cost: float


@dataclass
class Reference:
    """The yardsticks every curve is measured against."""

    weak: str  # cheapest single model
    strong: str  # best single model
    weak_accuracy: float
    weak_cost: float
    strong_accuracy: float
    strong_cost: float
    cost_range: tuple[float, float]  # AIQ's range: cheapest .. most expensive single model
    apgr_axis: str


def baselines(p: Prepared) -> tuple[list[Baseline], Reference]:
    """Every single model, the oracle, random routing; and the weak/strong reference."""
    models = p.test.models
    acc = p.scores.mean(axis=0)  # (M,)
    cost = p.real.mean(axis=0)  # (M,)
    out = [Baseline(m, "single", float(a), float(c)) for m, a, c in zip(models, acc, cost)]
    oracle = metrics.oracle_choice(p.scores, p.real)
    out.append(Baseline("oracle", "oracle", metrics.accuracy(p.scores, oracle),
                        metrics.mean_cost(p.real, oracle)))
    rand = metrics.random_choice(len(p.test), len(models), p.suite.seed)
    out.append(Baseline(f"random (seed {p.suite.seed})", "random",
                        metrics.accuracy(p.scores, rand), metrics.mean_cost(p.real, rand)))
    strong = int(np.lexsort((cost, -acc))[0])  # best accuracy, cheaper among ties
    weak = int(np.lexsort((-acc, cost))[0])  # cheapest, better among ties
    axis = "share of calls to the strong model" if len(models) == 2 else \
        "normalised cost (cost - c_weak) / (c_strong - c_weak)"
    ref = Reference(models[weak], models[strong], float(acc[weak]), float(cost[weak]),
                    float(acc[strong]), float(cost[strong]),
                    (float(cost.min()), float(cost.max())), axis)
    return out, ref


@dataclass
class CurveResult:
    """A (router, policy) pair: its operating point, its sweep and the curve's metrics."""

    router: str
    policy: str
    kind: str
    sweep_param: str
    params: dict[str, Any]
    operating: Point
    points: list[Point]
    hull: np.ndarray
    metrics: dict[str, float | None]
    sweep_s: float

    @property
    def label(self) -> str:
        return f"{self.router} / {self.policy}"


def curve_metrics(
    points: list[Point], ref: Reference, n_models: int
) -> tuple[np.ndarray, dict[str, float | None]]:
    """Non-decreasing convex hull and every summary metric of one curve."""
    cost = np.array([pt.cost for pt in points])
    acc = np.array([pt.accuracy for pt in points])
    if n_models == 2:
        x = np.array([pt.shares.get(ref.strong, 0.0) for pt in points])
    elif ref.strong_cost > ref.weak_cost:
        x = (cost - ref.weak_cost) / (ref.strong_cost - ref.weak_cost)
    else:
        x = np.full(len(points), np.nan)
    hull = metrics.nondecreasing_convex_hull(cost, acc)
    mmr = metrics.mmr_summary(cost, acc, ref.strong_accuracy, ref.strong_cost)
    w, s = ref.weak_accuracy, ref.strong_accuracy
    ok = np.isfinite(x)
    values = {
        "aiq": metrics.aiq(hull, *ref.cost_range),
        "apgr": metrics.apgr(x[ok], acc[ok], w, s),
        "cpt50": metrics.cpt(x[ok], acc[ok], w, s, 0.5),
        "cpt80": metrics.cpt(x[ok], acc[ok], w, s, 0.8),
        "nauc": mmr["nauc"], "ps": mmr["ps"], "qnc": mmr["qnc"],
        "match_cost_fraction": metrics.match_cost_fraction(hull, s, ref.strong_cost),
        "max_accuracy": float(acc.max()),
    }
    return hull, {k: finite_or_none(v) for k, v in values.items()}


@dataclass
class SuiteResult:
    suite: Suite
    suite_path: str
    data: dict[str, Any]
    costs: dict[str, Any]
    baselines: list[Baseline]
    reference: Reference
    curves: list[CurveResult]
    timing: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


class _Tasks:
    """Rich progress tasks, or nothing when no Progress is given."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress

    def start(self, description: str, total: int) -> Callable[[int], None]:
        progress = self.progress
        if progress is None:
            return lambda n: None
        task = progress.add_task(description, total=total)
        return lambda n: progress.advance(task, n)

    def reporter(self, description: str) -> Callable[[int, int], None] | None:
        """A ``(done, total)`` callback for work that reports its own progress."""
        progress = self.progress
        if progress is None:
            return None
        tasks: list[TaskID] = []  # created on the first report

        def report(done: int, total: int) -> None:
            if not tasks:
                tasks.append(progress.add_task(description, total=total))
            progress.update(tasks[0], completed=done, total=total)

        return report


def _policy_curves(
    p: Prepared, entry: SuitePolicy, where: str, router: str, arrays: Arrays, ref: Reference,
    advance: Callable[[int], None],
) -> CurveResult:
    try:
        policy = build_policy(entry.kind, entry.params)
    except ValueError as exc:
        raise ConfigError(p.suite_path, where, str(exc)) from exc
    values = sweep_values(entry.sweep, policy, arrays, p.suite_path, f"{where}.sweep")
    t0 = time.perf_counter()
    points = []
    for v in values:
        points += sweep(policy, arrays, np.array([v]))
        advance(1)
    elapsed = time.perf_counter() - t0
    operating = evaluate_point(policy, arrays, float(getattr(policy, policy.sweep_param)))
    hull, values_ = curve_metrics(points, ref, len(p.test.models))
    return CurveResult(router, entry.label, entry.kind, policy.sweep_param, policy.describe(),
                       operating, points, hull, values_, elapsed)


def _strategy_curve(
    p: Prepared, entry: SuiteStrategy, where: str, router: str, arrays: Arrays,
    ref: Reference, advance: Callable[[int], None],
) -> CurveResult:
    """One strategy over one router's predictions, swept (coe_gateway.eval.offline)."""
    from coe_gateway.errors import GatewayError
    from coe_gateway.strategies import STRATEGIES, build_strategy

    if not p.test.answers:
        raise ConfigError(p.suite_path, where, "the data carries no answers: strategies "
                          "compare the experts' answers (see shared/data/README.md)")
    if entry.params.get("tiers") == "train":
        from coe_gateway.eval.offline import train_tiers

        cols = [p.train.models.index(e) for e in arrays.experts]
        tiers = train_tiers(arrays.experts, np.nan_to_num(p.train.scores, nan=0.0)[:, cols]
                            .mean(axis=0), p.cost_model.estimate(p.train)[:, cols].mean(axis=0),
                            entry.params)
        entry = entry.model_copy(update={"params": {**entry.params, "tiers": tiers}})
    try:
        strategy = build_strategy(entry.kind, entry.params)
    except GatewayError as exc:
        raise ConfigError(p.suite_path, where, exc.message) from exc
    param = entry.param or str(getattr(STRATEGIES[entry.kind], "sweep_param", ""))
    if not param:
        raise ConfigError(p.suite_path, where, f"say which parameter of {entry.kind!r} to "
                          "sweep (param)")
    t0 = time.perf_counter()
    prompts = p.test.prompts
    try:
        points = sweep_strategy(entry.kind, entry.params, param, entry.values, arrays,
                                prompts, p.test.answers, router, advance)
        operating = strategy_point(entry.kind, entry.params, param,
                                   float(entry.params.get(param, entry.values[0])), arrays,
                                   prompts, p.test.answers, router)
    except GatewayError as exc:
        raise ConfigError(p.suite_path, f"{where}.values", exc.message) from exc
    elapsed = time.perf_counter() - t0
    hull, values_ = curve_metrics(points, ref, len(p.test.models))
    return CurveResult(router, entry.label, entry.kind, param, strategy.describe(),
                       operating, points, hull, values_, elapsed)


def evaluate(
    p: Prepared, *, store: PredictionStore | None = None, progress: Progress | None = None,
) -> SuiteResult:
    """Baselines, then every router x policy of the suite, on prepared data."""
    store = store or PredictionStore()
    tasks = _Tasks(progress)
    base, ref = baselines(p)
    curves: list[CurveResult] = []
    timing: dict[str, Any] = {"routers": {}, "sweeps_s": 0.0}
    for i, entry in enumerate(p.suite.routers):
        where = f"routers[{i}]"
        run = run_router(entry, p.train, p.test, store=store, split="test",
                         data_paths=p.suite.data.paths, seed=p.suite.split.seed,
                         suite_path=p.suite_path, where=where,
                         advance=tasks.start(f"predict {entry.name}", len(p.test)),
                         on_progress=tasks.reporter(f"train {entry.name}"))
        timing["routers"][entry.name] = {"fit_s": run.fit_s, "predict_s": run.predict_s,
                                         "cached": run.cached}
        arrays = Arrays.align(run.prediction, p.test.models, p.est, p.scores, p.real)
        for j, pol in enumerate(p.suite.policies):
            advance = tasks.start(f"sweep {entry.name} / {pol.label}", pol.sweep.count)
            curve = _policy_curves(p, pol, f"policies[{j}]", entry.name, arrays, ref, advance)
            timing["sweeps_s"] += curve.sweep_s
            curves.append(curve)
        for j, st in enumerate(p.suite.strategies):
            if st.routers is not None and entry.name not in st.routers:
                continue
            advance = tasks.start(f"strategy {entry.name} / {st.label}", len(st.values))
            curve = _strategy_curve(p, st, f"strategies[{j}]", entry.name, arrays, ref,
                                    advance)
            timing["sweeps_s"] += curve.sweep_s
            curves.append(curve)
    suite_dir = Path(p.suite_path).resolve().parent
    data = {
        "paths": [os.path.relpath(x, suite_dir) for x in p.suite.data.paths],
        "records": len(p.records), "train": len(p.train),
        "test": len(p.test), "models": list(p.test.models), "split": p.split_how,
        "attribution": p.suite.data.attribution,
    }
    costs = {"model": p.suite.costs.model, "chars_per_token": p.suite.costs.chars_per_token,
             "image_tokens": p.suite.costs.image_tokens,
             "per_model": p.cost_model.describe(p.prices)}
    return SuiteResult(p.suite, p.suite_path, data, costs, base, ref, curves, timing)


def run_suite(
    path: str | Path, out_dir: str | Path | None = None, *, cache_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> SuiteResult:
    """Load, evaluate and (with ``out_dir``) write results.json, report.md and the plots."""
    t0 = time.perf_counter()
    suite = load_suite(path)
    prepared = prepare(suite, str(path))
    t1 = time.perf_counter()
    store = PredictionStore(Path(cache_dir) / suite.name if cache_dir else None)
    result = evaluate(prepared, store=store, progress=progress)
    result.timing["load_s"] = t1 - t0
    result.timing["total_s"] = time.perf_counter() - t0
    if out_dir is not None:
        from coe_gateway.eval.report import write_outputs

        write_outputs(result, Path(out_dir))
    return result
