"""The worker-kind contract and its registry.

A *worker kind* is a program the workers service (or a gateway in ``launch`` mode) starts
and supervises locally for an expert: an expert whose ``backend`` names a registered kind is
launched here, one process per replica; any other backend (``openai``, ``litellm``) is an
endpoint somebody else runs.

A kind says how to start one replica (:meth:`WorkerKind.argv`, :meth:`WorkerKind.env`),
where it answers (:meth:`WorkerKind.base_url`) and where its health is read
(:meth:`WorkerKind.health_url`). How the gateway talks to it is a backend: the expert's
own backend kind when :data:`~coe_gateway.workers.backends.BACKENDS` has one of that name
(``vllm``), else :attr:`WorkerKind.transport` (``openai``: any OpenAI-compatible server).

Kinds are entries of :data:`WORKER_KINDS`; adding one (e.g. the fused MoT expert) is one
module whose class is decorated with :func:`register_worker_kind`, imported by
:mod:`coe_gateway.workers.kinds`.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TypeVar

from coe_gateway.config import ExpertConfig, GatewayConfig, expand
from coe_gateway.workers.backends import BACKENDS, Backend, Endpoint, build_backend

OFFLINE_ENV: Mapping[str, str] = MappingProxyType({
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
    "DO_NOT_TRACK": "1"})
"""Set for every worker: nothing is downloaded at run time, logs are not buffered."""


class WorkerKind(ABC):
    """How to run one replica of a locally launched expert."""

    name: str = ""
    transport: str = "openai"
    """Backend kind used to reach the worker when none is registered under :attr:`name`."""
    health_path: str = "/health"

    @abstractmethod
    def argv(self, cfg: GatewayConfig, expert: ExpertConfig, index: int, port: int) -> list[str]:
        """The command line of replica ``index`` of ``expert``, listening on ``port``."""

    def env(self, expert: ExpertConfig, index: int) -> dict[str, str]:
        """The environment of replica ``index``: this process's, offline, plus ``expert.env``."""
        return {**os.environ, **OFFLINE_ENV, **expert.env}

    def base_url(self, port: int) -> str:
        """The OpenAI base URL of a worker on ``port``."""
        return f"http://127.0.0.1:{port}/v1"

    def health_url(self, port: int) -> str:
        """Where the supervisor reads a worker's health (200 = healthy)."""
        return f"http://127.0.0.1:{port}{self.health_path}"


def python_of(cfg: GatewayConfig) -> str:
    """The interpreter workers run under: ``workers.python``, default this one."""
    return expand(cfg.workers.python) if cfg.workers.python else sys.executable


WORKER_KINDS: dict[str, WorkerKind] = {}
"""Worker kind -> its (stateless) instance. Filled by :func:`register_worker_kind`."""

K = TypeVar("K", bound=type[WorkerKind])


def register_worker_kind(name: str) -> Callable[[K], K]:
    """Class decorator: experts with ``backend: <name>`` are launched with this kind."""

    def add(cls: K) -> K:
        kind = cls()
        kind.name = name
        WORKER_KINDS[name] = kind
        return cls

    return add


def worker_kind(expert: ExpertConfig) -> WorkerKind:
    """The kind that launches ``expert`` (ValueError when its backend is not one)."""
    try:
        return WORKER_KINDS[expert.backend]
    except KeyError:
        raise ValueError(f"expert {expert.name}: backend {expert.backend!r} is not a worker "
                         f"kind; known: {sorted(WORKER_KINDS)}") from None


def is_local(expert: ExpertConfig) -> bool:
    """True when ``expert`` is launched here (its backend names a worker kind)."""
    return expert.backend in WORKER_KINDS


def local_experts(cfg: GatewayConfig) -> list[ExpertConfig]:
    """The experts of ``cfg`` that are launched locally, in config order."""
    return [e for e in cfg.experts if is_local(e)]


def local_backend(expert: ExpertConfig, index: int, url: str) -> Backend:
    """The backend that reaches replica ``index`` of a local ``expert`` at ``url``."""
    if expert.backend in BACKENDS:
        return build_backend(expert, index, Endpoint(url))
    return BACKENDS[worker_kind(expert).transport](expert, index, Endpoint(url))
