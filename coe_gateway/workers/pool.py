"""The worker pool: every expert's replicas, and the choice of one replica per request.

A request for an expert goes to the healthy replica with the fewest requests in flight
(ties: the one used least recently). Health is set by the supervisor's checks (local vLLM
workers) or by the pool's own checks (``openai`` and ``litellm`` endpoints).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from coe_gateway.errors import UpstreamUnavailableError
from coe_gateway.workers.backends import Backend, ChatResult


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

    @property
    def experts(self) -> list[str]:
        return list(self._replicas)

    def replicas(self, expert: str | None = None) -> list[Replica]:
        if expert is None:
            return [r for rs in self._replicas.values() for r in rs]
        return list(self._replicas.get(expert, []))

    def is_available(self, expert: str) -> bool:
        return any(r.healthy for r in self._replicas.get(expert, []))

    def pick(self, expert: str) -> Replica:
        """The healthy replica with the fewest requests in flight."""
        healthy = [r for r in self._replicas.get(expert, []) if r.healthy]
        if not healthy:
            raise UpstreamUnavailableError(f"expert {expert} has no healthy replica right now")
        return min(healthy, key=lambda r: (r.in_flight, r.last_used))

    async def chat(self, expert: str, body: dict[str, Any]) -> ChatResult:
        """Send ``body`` to a replica of ``expert``; in-flight counts last until the response
        (or the whole stream) is done."""
        replica = self.pick(expert)
        replica.in_flight += 1
        replica.last_used = next(self._clock)
        try:
            result = await replica.backend.chat(body)
        except BaseException:
            replica.in_flight -= 1
            raise
        if isinstance(result, dict):
            replica.in_flight -= 1
            return result
        return self._track(replica, result)

    @staticmethod
    async def _track(
        replica: Replica, stream: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            async for chunk in stream:
                yield chunk
        finally:
            replica.in_flight -= 1
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def check_health(self, replicas: Iterable[Replica]) -> None:
        """Probe ``replicas`` and record the outcome."""
        for r in replicas:
            r.healthy = await r.backend.health()
            r.state = "ready" if r.healthy else "unhealthy"

    async def aclose(self) -> None:
        for r in self.replicas():
            await r.backend.aclose()
