"""The evaluator's own speed: a suite's sweeps on all its records, router training excluded.

``coe-gateway eval bench`` (default: the MMLU-Pro suite, 50-point sweeps, the ``prior``
router) loads the data, trains the routers on every record (timed apart), then times the
baselines, every policy's sweep and its metrics, and writing the report and plots. It prints
figures; it asserts nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from coe_gateway.eval.predictions import PredictionStore
from coe_gateway.eval.report import write_outputs
from coe_gateway.eval.runner import evaluate, prepare
from coe_gateway.eval.suite import load_suite


def bench_suite(suite_path: str | Path, points: int = 50,
                routers: list[str] | None = None) -> dict[str, Any]:
    """Stage timings (seconds) of evaluating ``suite_path`` on all its records."""
    suite = load_suite(suite_path)
    keep = [r for r in suite.routers if routers is None or r.name in routers]
    if not keep:
        raise ValueError(f"none of {routers} is a router of {suite_path}")
    policies = [p.model_copy(update={"sweep": p.sweep.model_copy(update={"count": points,
                                                                          "values": None})})
                for p in suite.policies]
    suite = suite.model_copy(update={"routers": keep, "policies": policies})
    t0 = time.perf_counter()
    prepared = prepare(suite, str(suite_path), eval_all=True)
    t1 = time.perf_counter()
    result = evaluate(prepared, store=PredictionStore())
    t2 = time.perf_counter()
    with TemporaryDirectory() as tmp:
        write_outputs(result, Path(tmp))
    t3 = time.perf_counter()
    router_s = sum(v["fit_s"] + v["predict_s"] for v in result.timing["routers"].values())
    return {
        "suite": suite.name, "queries": len(prepared.test), "models": len(prepared.test.models),
        "routers": [r.name for r in keep], "policies": [p.label for p in policies],
        "points_per_sweep": points, "load_and_cost_s": t1 - t0,
        "router_train_predict_s (excluded)": router_s,
        "baselines_sweeps_metrics_s": (t2 - t1) - router_s,
        "sweeps_only_s": result.timing["sweeps_s"], "report_and_plots_s": t3 - t2,
        "total_excluding_router_s": (t3 - t0) - router_s,
        "load_average": os.getloadavg()[0], "cpus": os.cpu_count(),
    }
