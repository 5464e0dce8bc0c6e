"""The worker pool: every expert's replicas, and the choice of one replica per attempt.

An attempt goes to the healthy replica with the fewest requests in flight (ties: the one used
least recently): :meth:`WorkerPool.acquire` counts it in flight, :meth:`WorkerPool.release`
when its answer (or its whole stream) is done. Health is set by whoever owns the replica:
the supervisor (workers this process launched), the fleet client (workers published by a
``coe-gateway workers`` service) or the pool's own checks (``openai``/``litellm`` endpoints).
Experts are looked up in a dict, never by scanning.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from coe_gateway.errors import UpstreamUnavailableError
from coe_gateway.workers.backends import Backend


@dataclass(eq=False)
class Replica:
    """One serving instance of an expert."""

    expert: str
    index: int
    backend: Backend
    healthy: bool = False
    in_flight: int = 0
    last_used: int = 0
    state: str = "starting"
    detail: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"replica": self.index, "healthy": self.healthy, "state": self.state,
                "in_flight": self.in_flight, **self.detail}


class WorkerPool:
    """Replicas by expert, with least-outstanding-requests selection."""

    def __init__(self, replicas: Iterable[Replica] = ()) -> None:
        self._replicas: dict[str, list[Replica]] = {}
        self._clock = itertools.count(1)
        for r in replicas:
            self.add(r)

    def add(self, replica: Replica) -> None:
        self._replicas.setdefault(replica.expert, []).append(replica)

    def remove(self, replica: Replica) -> None:
        """Take ``replica`` out of selection (attempts already on it finish)."""
        rs = self._replicas.get(replica.expert, [])
        if replica in rs:
            rs.remove(replica)

    @property
    def experts(self) -> list[str]:
        return list(self._replicas)

    def replicas(self, expert: str | None = None) -> list[Replica]:
        if expert is None:
            return [r for rs in self._replicas.values() for r in rs]
        return list(self._replicas.get(expert, ()))

    def is_available(self, expert: str) -> bool:
        return any(r.healthy for r in self._replicas.get(expert, ()))

    def available(self) -> set[str]:
        """The experts with at least one healthy replica."""
        return {e for e, rs in self._replicas.items() if any(r.healthy for r in rs)}

    def pick(self, expert: str) -> Replica:
        """The healthy replica with the fewest requests in flight (503 when none)."""
        best: Replica | None = None
        for r in self._replicas.get(expert, ()):
            if r.healthy and (best is None or (r.in_flight, r.last_used)
                              < (best.in_flight, best.last_used)):
                best = r
        if best is None:
            raise UpstreamUnavailableError(f"expert {expert} has no healthy replica right now")
        return best

    def acquire(self, expert: str) -> Replica:
        """:meth:`pick`, counted in flight until :meth:`release`."""
        replica = self.pick(expert)
        replica.in_flight += 1
        replica.last_used = next(self._clock)
        return replica

    @staticmethod
    def release(replica: Replica) -> None:
        replica.in_flight -= 1

    async def check_health(self, replicas: Iterable[Replica]) -> None:
        """Probe ``replicas`` and record the outcome."""
        for r in replicas:
            r.healthy = await r.backend.health()
            r.state = "ready" if r.healthy else "unhealthy"

    async def aclose(self) -> None:
        for r in self.replicas():
            await r.backend.aclose()
