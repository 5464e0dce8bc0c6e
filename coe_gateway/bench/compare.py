"""``coe-gateway bench compare``: the coe-gateway and the LiteLLM proxy side by side, over the
same fast fake upstream, with the same load generator, in one run.

Targets, measured one after the other (never at the same time):

* ``direct``: the load generator straight to the fake upstream (the baseline every "added"
  figure subtracts);
* ``gateway``: ``coe-gateway serve`` with two ``openai`` experts on the upstream, the prior
  router, model ``auto``, cache off, no budget file;
* ``gateway+budget`` (``--with-budget``): the same plus a budget file (one tenant, a generous
  budget, its key sent as Bearer), the Redis ledger and the exact cache; every request has a
  distinct prompt and ``temperature: 0``, so each one is a cache lookup that misses, a
  reservation, a settlement and a cache store;
* ``gateway×N`` (``--gateway-workers N``, N > 1): N gateway processes, when ``serve`` supports
  it (a ``--workers`` option, or ``server.workers`` in the config); skipped otherwise;
* ``litellm``: ``litellm --num_workers 1`` from its own venv, one ``openai/x`` deployment
  named ``auto`` on the upstream, master key sent as Bearer, logs and spend tracking off.

Per target: (1) sequential latency at one request in flight, (2) closed-loop throughput at
16 connections, (3) streaming, ``chunks`` content chunks a stream paced by the upstream:
(3a) one stream at a time for ``seconds`` (time to first token and per-chunk cost with
nothing queued), (3b) ``streams`` streams sent at once (time to first token, inter-chunk gap,
stall-free streams under a burst of stream set-ups), (4) an open-loop rate sweep, and (5) the
server's CPU time per request and stream (``/proc/<pid>/stat`` of its whole process tree) and
its RSS after the load.

Pinning: the server under test runs on its own core(s), the upstream and the load generator
(this process) on the rest; on a 2-core machine the server gets core 0, the harness core 1.
The figures are benchmarks of this machine at this moment, never asserts.

The parts: :mod:`~coe_gateway.bench.settings` (the options), :mod:`~coe_gateway.bench.processes`
(cores, starting and watching servers), :mod:`~coe_gateway.bench.targets` (what each target is
and how it starts), :mod:`~coe_gateway.bench.steps` (the measurements and their figures),
:mod:`~coe_gateway.bench.report` (derived figures, JSON, tables); this module runs them in
order.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from coe_gateway.bench.litellm_env import LiteLLMEnv
from coe_gateway.bench.processes import CorePlan, plan_cores
from coe_gateway.bench.report import (
    CompareReport,
    added_figures,
    json_ready,
    limitations,
    ratios,
    render,
)
from coe_gateway.bench.settings import CompareSettings, Say
from coe_gateway.bench.steps import (
    LatencyFigures,
    RateFigures,
    StreamFigures,
    TargetFigures,
    measure_target,
    run_async,
    sanity_check,
)
from coe_gateway.bench.targets import (
    Harness,
    Target,
    TargetFactory,
    chat_source,
    target_factories,
    upstream,
)

__all__ = [
    "CompareReport", "CompareSettings", "CorePlan", "LatencyFigures", "RateFigures",
    "StreamFigures", "Target", "TargetFigures", "added_figures", "chat_source", "plan_cores",
    "ratios", "render", "run", "run_async", "run_target", "sanity_check", "upstream",
]


def run_target(key: str, label: str, factory: TargetFactory, s: CompareSettings,
               say: Say) -> TargetFigures:
    """Start one target, measure it, stop it; a target that fails is reported, not raised."""
    say(f"{label}: starting")
    try:
        with factory() as target:
            return run_async(measure_target(target, s, say))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        say(f"{label}: FAILED: {exc}")
        return TargetFigures(key, label, error=str(exc).strip().splitlines()[0][:300])


def run(s: CompareSettings, say: Say = print) -> CompareReport:
    """Start the upstream, measure every target in turn, and return the report."""
    original = os.sched_getaffinity(0)
    plan = plan_cores(sorted(original))
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
        "cores": sorted(original), "server_cores": list(plan.server),
        "harness_cores": list(plan.harness), "load_average_before": os.getloadavg()[0],
        "stall_threshold_ms": s.stall_threshold_s * 1e3, "notes": []}
    if not s.skip_litellm:
        env = LiteLLMEnv(s.litellm_venv)
        meta["litellm_venv"] = str(env.venv)
    os.sched_setaffinity(0, set(plan.harness))
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="coe-bench-compare-") as tmp_name:
            tmp = Path(tmp_name)
            with upstream(plan.harness, s.chunk_interval_s, tmp / "upstream.log") as (port, pid):
                h = Harness(port, pid, plan, tuple(sorted(original)), tmp, s)
                factories, notes = target_factories(h, say)
                meta["notes"] += notes
                targets = [run_target(key, label, f, s, say) for key, label, f in factories]
            if s.log_dir is not None:
                s.log_dir.mkdir(parents=True, exist_ok=True)
                for log in tmp.glob("*.log"):
                    shutil.copy(log, s.log_dir / log.name)
    finally:
        os.sched_setaffinity(0, original)
    meta["wall_seconds"] = time.perf_counter() - started
    if any(t.key == "litellm" and t.error is None for t in targets):
        meta["litellm_version"] = LiteLLMEnv(s.litellm_venv).version()
    report = CompareReport(json_ready(asdict(s)), meta, targets)
    meta["notes"] += limitations(report, plan)
    return report

