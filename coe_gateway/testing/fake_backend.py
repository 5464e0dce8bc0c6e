"""An in-memory backend (httpx's ``MockTransport`` idea) and a :class:`Gateway` built on it,
so that tests of the pipeline need no server, no socket and no model.

Each call of a :class:`FakeBackend` follows a :class:`Script`: answer (a body, or a stream of
one role event, one event per word, a finish event and the usage event), fail before the
first byte with an HTTP status, break after ``fail_after`` events, send an empty stream, omit
usage, wait ``delay_s`` first, or hang after ``hang_after`` events (a stalled upstream, for
client-disconnect tests). ``script`` may be one script, a list (one per call, the last
repeated) or a function of the parsed request body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from coe_gateway.config import GatewayConfig
from coe_gateway.errors import UpstreamError
from coe_gateway.gateway import Gateway
from coe_gateway.metrics import GatewayMetrics
from coe_gateway.policies import build_policy
from coe_gateway.routing import RouterSet
from coe_gateway.routing_log import RoutingLog
from coe_gateway.sse import Body, Event, dumps, loads
from coe_gateway.tenancy import Tenancy
from coe_gateway.workers.backends import Backend, ChatResult, map_status
from coe_gateway.workers.pool import Replica, WorkerPool


@dataclass(frozen=True)
class Script:
    """What one call does (see the module docstring)."""

    text: str = "echo echo echo"
    fail_status: int | None = None
    fail_after: int | None = None
    empty: bool = False
    usage: bool = True
    delay_s: float = 0.0
    hang_after: int | None = None
    model: str | None = None


ScriptSource = Script | Sequence[Script] | Callable[[dict[str, Any]], Script]


class FakeBackend(Backend):
    """A replica that answers from its scripts; ``calls`` keeps every parsed request body,
    ``open_streams`` counts streams not yet closed (an abandoned stream shows there)."""

    def __init__(self, name: str = "fake", script: ScriptSource = Script()) -> None:
        self.name = name
        self.script = script
        self.calls: list[dict[str, Any]] = []
        self.open_streams = 0
        self.sent: list[bytes] = []  # the raw events of the last stream, as yielded
        self.healthy = True

    def _next(self, body: dict[str, Any]) -> Script:
        if isinstance(self.script, Script):
            return self.script
        if callable(self.script):
            return self.script(body)
        return self.script[min(len(self.calls) - 1, len(self.script) - 1)]

    async def chat(self, payload: bytes, *, stream: bool) -> ChatResult:
        body = loads(payload)
        self.calls.append(body)
        s = self._next(body)
        if s.delay_s:
            await asyncio.sleep(s.delay_s)
        if s.fail_status is not None:
            raise map_status(self.name, s.fail_status,
                             dumps({"error": {"message": f"scripted {s.fail_status}"}}))
        model = s.model or str(body.get("model"))
        words = s.text.split()
        prompt = max(1, len(payload) // 4)
        if not stream:
            return Body(dumps(completion(model, s.text, prompt, len(words), s.usage)))
        return self._events(s, model, words, prompt)

    async def _events(self, s: Script, model: str, words: list[str], prompt: int
                      ) -> AsyncIterator[Event]:
        self.open_streams += 1
        self.sent = []
        try:
            if s.empty:
                return
            for i, obj in enumerate(chunks(model, words, prompt, s.usage)):
                if s.fail_after is not None and i >= s.fail_after:
                    raise UpstreamError(f"expert {self.name}: scripted break after {i} events")
                if s.hang_after is not None and i >= s.hang_after:
                    await asyncio.Event().wait()
                event = Event.of(obj)
                self.sent.append(event.raw)
                yield event
                await asyncio.sleep(0)
        finally:
            self.open_streams -= 1

    async def health(self) -> bool:
        return self.healthy


def completion(model: str, text: str, prompt: int, n: int, usage: bool = True
               ) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}]}
    if usage:
        out["usage"] = {"prompt_tokens": prompt, "completion_tokens": n,
                        "total_tokens": prompt + n}
    return out


def chunks(model: str, words: list[str], prompt: int, usage: bool) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}

    def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}

    out = [delta({"role": "assistant", "content": ""})]
    out += [delta({"content": (" " if i else "") + w}) for i, w in enumerate(words)]
    out.append(delta({}, "stop"))
    if usage:
        out.append({**base, "choices": [], "usage": {
            "prompt_tokens": prompt, "completion_tokens": len(words),
            "total_tokens": prompt + len(words)}})
    return out


def fake_config(experts: Sequence[str], **overrides: Any) -> GatewayConfig:
    """A config of ``openai`` experts (never called: their backends are replaced), the prior
    router (priors rising in the order given, so the last expert ranks first at ``lam`` 0)
    and the trade-off policy; ``overrides`` are top-level config keys."""
    n = len(experts)
    priors = {e: round(0.3 + 0.6 * i / max(n - 1, 1), 3) for i, e in enumerate(experts)}
    data: dict[str, Any] = {
        "experts": [{"name": e, "backend": "openai", "model": e,
                     "urls": ["http://127.0.0.1:9/v1"], "context_length": 4096,
                     "price": {"input_per_mtok": 1.0 + i, "output_per_mtok": 2.0 + i}}
                    for i, e in enumerate(experts)],
        "routing": {"default_router": "prior",
                    "routers": [{"name": "prior", "kind": "prior",
                                 "options": {"priors": priors}}],
                    "policy": {"kind": "trade-off", "params": {"lam": 0.0}}},
        "cache": {"enabled": False},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return GatewayConfig.model_validate(data)


def fake_gateway(backends: dict[str, FakeBackend], cfg: GatewayConfig | None = None,
                 routing_log: RoutingLog | None = None,
                 tenancy: Tenancy | None = None) -> Gateway:
    """A :class:`Gateway` over in-memory backends (one healthy replica each)."""
    cfg = cfg or fake_config(list(backends))
    metrics = GatewayMetrics()
    pool = WorkerPool([Replica(name, 0, b, healthy=True, state="ready")
                       for name, b in backends.items()])
    routers = RouterSet(cfg.routing.routers, cfg.expert_names, cfg.routing.default_router)
    policy = build_policy(cfg.routing.policy.kind, cfg.routing.policy.params)
    tenancy = tenancy or Tenancy.from_config(cfg, metrics.registry)
    return Gateway(cfg, pool, routers, policy, metrics, routing_log, tenancy)
