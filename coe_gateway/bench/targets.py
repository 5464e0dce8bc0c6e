"""The targets of ``coe-gateway bench compare``: what each one is (direct, the gateway, the
gateway with a budget, N gateway processes, the LiteLLM proxy), its config, how it is started
over the fast fake upstream, and the request bytes the load generator sends it."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from coe_gateway.bench import loadgen
from coe_gateway.bench.litellm_env import (
    LiteLLMEnv,
    proxy_argv,
    proxy_environ,
    setup_venv,
    write_config,
)
from coe_gateway.bench.processes import CorePlan, free_port, plan_cores, service
from coe_gateway.bench.settings import (
    CHAT_PATH,
    HOST,
    PROMPT,
    UPSTREAM_MODEL,
    CompareSettings,
    Say,
)

# -- the targets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A server the load generator calls, and the process whose CPU is counted."""

    key: str
    label: str
    port: int
    model: str
    pid: int
    headers: dict[str, str] = field(default_factory=dict)
    unique_prompts: bool = False
    description: str = ""


def chat_source(target: Target, *, stream: bool, max_tokens: int) -> loadgen.RequestSource:
    """Request bytes for ``target``: one pre-built request, or (``unique_prompts``) a new
    prompt each call with ``temperature: 0`` so a response cache looks up and misses."""
    body: dict[str, Any] = {"model": target.model,
                            "messages": [{"role": "user", "content": PROMPT}],
                            "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if not target.unique_prompts:
        request = loadgen.build_request(HOST, target.port, CHAT_PATH, json.dumps(body).encode(),
                                        target.headers)
        return lambda: request
    marker = "@@N@@"
    body["temperature"] = 0
    body["messages"][0]["content"] = f"{PROMPT} ({secrets.token_hex(4)}-{marker})"
    prefix, suffix = json.dumps(body).encode().split(marker.encode())
    counter = itertools.count()

    def unique() -> bytes:
        raw = prefix + str(next(counter)).encode() + suffix
        return loadgen.build_request(HOST, target.port, CHAT_PATH, raw, target.headers)

    return unique


def gateway_argv(config: Path, port: int, workers: int = 1,
                 workers_via: Literal["cli", "config"] | None = None) -> list[str]:
    """``coe-gateway serve`` from this environment."""
    exe = Path(sys.executable).with_name("coe-gateway")
    prefix = [str(exe)] if exe.exists() else [sys.executable, "-m", "coe_gateway"]
    argv = [*prefix, "serve", "--config", str(config), "--port", str(port)]
    if workers > 1 and workers_via == "cli":
        argv += ["--workers", str(workers)]
    return argv


def server_config_fields() -> frozenset[str]:
    """The keys the gateway config's ``server`` section accepts (unknown keys are errors)."""
    from coe_gateway.config import ServerConfig

    return frozenset(ServerConfig.model_fields)


def gateway_workers_support() -> Literal["cli", "config"] | None:
    """How ``serve`` takes a number of processes: a ``--workers`` option, a
    ``server.workers`` config field, or not at all (None)."""
    exe = gateway_argv(Path("x"), 1)[:-5]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([*exe, "serve", "--help"], capture_output=True, text=True,
                             check=False, timeout=60, env={**os.environ, "COLUMNS": "200"})
        if "--workers" in out.stdout:
            return "cli"
    return "config" if "workers" in server_config_fields() else None


def gateway_config(upstream_base: str, port: int, *, budget_file: Path | None = None,
                   redis_url: str | None = None, workers: int | None = None,
                   pin_workers: bool = False) -> dict[str, Any]:
    """The gateway config: two ``openai`` experts on the upstream, the prior router, model
    ``auto``; cache off unless a budget file (then the exact cache and the Redis ledger).
    ``workers`` sets ``server.workers``; ``pin_workers`` sets ``server.cpu_affinity`` (one
    gateway process per allowed core)."""
    def expert(name: str, price_in: float, price_out: float, prior: float) -> dict[str, Any]:
        return {"name": name, "backend": "openai", "model": UPSTREAM_MODEL,
                "urls": [upstream_base], "quality_prior": prior,
                "price": {"input_per_mtok": price_in, "output_per_mtok": price_out}}

    server: dict[str, Any] = {"port": port, "log_level": "warning"}
    if workers is not None:
        server["workers"] = workers
    if pin_workers:
        server["cpu_affinity"] = True
    cfg: dict[str, Any] = {
        "experts": [expert("cheap", 0.1, 0.1, 0.5), expert("strong", 10, 30, 0.9)],
        "routing": {"default_router": "prior",
                    "routers": [{"name": "prior", "kind": "prior",
                                 "options": {"priors": {"cheap": 0.5, "strong": 0.9}}}],
                    "policy": {"kind": "trade-off", "params": {"lam": 0.01}}},
        "server": server,
        "cache": {"enabled": budget_file is not None, "semantic": False},
    }
    if budget_file is not None:
        cfg["budget_file"] = str(budget_file)
        cfg["redis_url"] = redis_url
    return cfg


def budget_file(key: str, tenant: str) -> dict[str, Any]:
    """A budget file with one tenant: ``key`` (stored as its hash), a generous budget, the
    exact cache on, no rate limit."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return {"version": 1, "ledger": {"fail_open": False},
            "tenants": [{"name": tenant, "api_keys": [f"sha256:{digest}"],
                         "budgets": {"day_usd": 1_000_000.0, "month_usd": 10_000_000.0},
                         "cache": {"exact": True, "semantic": False}}]}


def redis_reachable(url: str) -> bool:
    """Whether something accepts TCP connections at the Redis URL's host and port."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    with contextlib.suppress(OSError), socket.create_connection(
            (parsed.hostname or HOST, parsed.port or 6379), timeout=1.0):
        return True
    return False


@dataclass(frozen=True)
class Harness:
    """What every target needs: the upstream, the core plan, a scratch directory."""

    upstream_port: int
    upstream_pid: int
    plan: CorePlan
    cores: tuple[int, ...]
    tmp: Path
    settings: CompareSettings

    @property
    def upstream_base(self) -> str:
        return f"http://{HOST}:{self.upstream_port}/v1"


@contextlib.contextmanager
def direct_target(h: Harness) -> Iterator[Target]:
    yield Target("direct", "direct", h.upstream_port, UPSTREAM_MODEL, h.upstream_pid,
                 description="load generator -> fake upstream")


@contextlib.contextmanager
def gateway_target(h: Harness, *, key: str = "gateway", label: str = "gateway",
                   with_budget: bool = False, workers: int = 1,
                   workers_via: Literal["cli", "config"] | None = None) -> Iterator[Target]:
    """Start ``coe-gateway serve`` over the upstream and yield it once ``/ready`` is 200."""
    port = free_port()
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if with_budget:
        api_key = "sk-coe-bench-" + secrets.token_urlsafe(24)
        path = h.tmp / f"{key}-budgets.yaml"
        path.write_text(yaml.safe_dump(budget_file(api_key, f"bench-{secrets.token_hex(4)}")))
        extra = {"budget_file": path, "redis_url": h.settings.redis_url}
        headers = {"authorization": f"Bearer {api_key}"}
    pin_workers = workers > 1 and "cpu_affinity" in server_config_fields()
    cfg = gateway_config(
        h.upstream_base, port,
        workers=workers if workers > 1 and workers_via == "config" else None,
        pin_workers=pin_workers, **extra)
    cfg_path = h.tmp / f"{key}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    plan = plan_cores(h.cores, workers)
    log = h.tmp / f"{key}.log"
    with service(gateway_argv(cfg_path, port, workers, workers_via),
                 f"http://{HOST}:{port}/ready", plan.server, log) as proc:
        desc = f"coe-gateway serve, {workers} process(es), cores {list(plan.server)}"
        if pin_workers:
            desc += " (one process per core: server.cpu_affinity)"
        if plan.shared:
            desc += ", sharing a core with the upstream and the load generator"
        if with_budget:
            desc += ", budget file + Redis ledger + exact cache"
        yield Target(key, label, port, "auto", proc.pid, headers, unique_prompts=with_budget,
                     description=desc)


@contextlib.contextmanager
def litellm_target(h: Harness, env: LiteLLMEnv) -> Iterator[Target]:
    """Start the LiteLLM proxy (one process) over the upstream."""
    port = free_port()
    master_key = "sk-bench-" + secrets.token_hex(16)
    config = write_config(h.tmp / "litellm.yaml", h.upstream_base)
    log = h.tmp / "litellm.log"
    with service(proxy_argv(env, config, port, workers=1),
                 f"http://{HOST}:{port}/health/liveliness", h.plan.server, log,
                 env=proxy_environ(master_key), timeout_s=180) as proc:
        yield Target("litellm", "litellm", port, "auto", proc.pid,
                     {"authorization": f"Bearer {master_key}"},
                     description=f"litellm {env.version()} proxy, --num_workers 1, "
                                 f"cores {list(h.plan.server)}")


@contextlib.contextmanager
def upstream(cores: Sequence[int], chunk_interval_s: float, log: Path) -> Iterator[tuple[int, int]]:
    """The fast fake upstream in its own process: yields (port, pid)."""
    port = free_port()
    argv = [sys.executable, "-m", "coe_gateway.bench.fast_upstream", "--port", str(port),
            "--chunk-interval-ms", str(chunk_interval_s * 1e3), "--model", UPSTREAM_MODEL]
    with service(argv, f"http://{HOST}:{port}/health", cores, log, timeout_s=30) as proc:
        yield port, proc.pid


TargetFactory = Callable[[], contextlib.AbstractContextManager[Target]]


def _litellm_env(s: CompareSettings, say: Say) -> LiteLLMEnv | str:
    """The LiteLLM venv, set up first when asked or absent; a string says why not."""
    env = LiteLLMEnv(s.litellm_venv)
    if s.setup_litellm or not env.installed():
        if not env.installed():
            say(f"litellm: no venv at {env.venv}; setting it up (pip install 'litellm[proxy]')")
        try:
            setup_venv(env, say)
        except (OSError, subprocess.CalledProcessError) as exc:
            return f"LiteLLM set-up failed: {exc}"
    return env


def target_factories(h: Harness, say: Say) -> tuple[list[tuple[str, str, TargetFactory]],
                                                    list[str]]:
    """The targets of this run in order, and notes on those left out."""
    s, notes = h.settings, []
    out: list[tuple[str, str, TargetFactory]] = [
        ("direct", "direct", lambda: direct_target(h)),
        ("gateway", "gateway", lambda: gateway_target(h)),
    ]
    if s.with_budget:
        if redis_reachable(s.redis_url):
            out.append(("gateway_budget", "gateway+budget", lambda: gateway_target(
                h, key="gateway_budget", label="gateway+budget", with_budget=True)))
        else:
            notes.append(f"gateway+budget skipped: no Redis at {s.redis_url}")
    if s.gateway_workers > 1:
        via = gateway_workers_support()
        if via is None:
            notes.append(f"gateway×{s.gateway_workers} skipped: `coe-gateway serve` has no "
                         "--workers option and the config no server.workers")
        else:
            label = f"gateway×{s.gateway_workers}"
            out.append(("gateway_workers", label, lambda: gateway_target(
                h, key="gateway_workers", label=label, workers=s.gateway_workers,
                workers_via=via)))
    if not s.skip_litellm:
        env = _litellm_env(s, say)
        if isinstance(env, str):
            notes.append(env)
        else:
            out.append(("litellm", "litellm", lambda: litellm_target(h, env)))
    return out, notes

