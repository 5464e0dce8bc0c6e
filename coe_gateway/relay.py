"""The reply of a served request: the accepted answer's bytes, relayed, and the book-keeping
at its end.

A body gets the routing extension ``coe_routing`` spliced in as bytes (and ``model`` renamed
to the expert when the upstream said another name); a stream gets it in its first event and
every other event goes out as received, parsed only when a byte sniff says it carries usage
or an error. The stream is assembled only when the cache will store it. At the end (last
event, failure, or the client gone) the :class:`Recorder` settles the attempt, counts the
metrics and writes one routing-log record per attempt. A stream that broke (or whose client
left) before the upstream reported usage is billed by what it relayed: the prompt estimate
plus one token per content event (``usage_estimated`` in its attempt).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from coe_gateway.cache import CacheHit
from coe_gateway.cache_stream import response_to_chunks
from coe_gateway.errors import GatewayError, UpstreamError
from coe_gateway.protocol import ChatRequest, estimate_prompt_tokens
from coe_gateway.routers.base import Query
from coe_gateway.routing import Decision
from coe_gateway.sse import DONE, Event, Renamer, chunks_of, dumps, splice_front
from coe_gateway.strategies import Attempt, Exchange, Outcome

if TYPE_CHECKING:
    from coe_gateway.gateway import Gateway


@dataclass
class Reply:
    """What the pipeline hands the server: body bytes or a stream of SSE bytes."""

    decision: Decision
    expert: str
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    cache: str | None = None  # "exact" / "semantic" for a cached answer, "miss" when looked up

    def headers(self) -> dict[str, str]:
        d = self.decision
        out = {
            "x-coe-expert": self.expert,
            "x-coe-router": d.router or "none",
            "x-coe-policy": str(d.policy.get("kind")),
            "x-coe-reason": d.reason_for(self.expert),
            "x-request-id": self.request_id,
        }
        if self.cache is not None:
            out["x-coe-cache"] = self.cache
        return out


class CacheStep(Protocol):
    @property
    def wanted(self) -> bool: ...

    async def store(self, response: dict[str, Any],
                    chunks: list[dict[str, Any]] | None = None, *, raw: bytes | None = None,
                    events: list[tuple[bytes, bool]] | None = None) -> None: ...


class Recorder:
    """The end of one request: metrics, the routing log, the routing extension."""

    def __init__(self, gw: Gateway, ex: Exchange, query: Query, strategy: dict[str, Any],
                 start: float, cache: CacheStep) -> None:
        self.gw, self.ex, self.query, self.strategy = gw, ex, query, strategy
        self.start, self.cache = start, cache
        self.request_id = gw.ids()

    def extension(self, answered: Attempt) -> dict[str, Any]:
        """The ``coe_routing`` field: the decision, the strategy, every attempt and, for a
        cascade, its trace (tiers, extracted answers, agreement, the reason)."""
        ext = self.ex.decision.extension(answered.expert)
        ext["strategy"] = self.described
        ext["attempts"] = [a.view() for a in self.ex.attempts]
        trace = self.ex.trace
        if trace:
            ext["cascade"] = trace
            if trace.get("reason"):
                ext["reason"] = f"{ext['reason']}; {self.strategy['kind']}: {trace['reason']}"
        return ext

    @property
    def described(self) -> dict[str, Any]:
        """The strategy as configured, with the answer kind a cascade resolved."""
        kind = self.ex.trace.get("answer_kind")
        return {**self.strategy, "answer": kind} if kind else self.strategy

    def done(self, status: int, answered: Attempt | None = None) -> None:
        """Count the request and write its attempts' records (its attempts all ended)."""
        m, req = self.gw.metrics, self.ex.request
        expert = answered.expert if answered else (
            self.ex.attempts[-1].expert if self.ex.attempts else "none")
        m.requests.labels(req.model, expert, str(status)).inc()
        m.latency.labels(expert, "true" if req.stream else "false").observe(
            time.perf_counter() - self.start)
        self.ex.count()
        if self.gw.routing_log is not None:
            for rec in self.records(answered):
                self.gw.routing_log.write(rec)

    def records(self, answered: Attempt | None) -> list[dict[str, Any]]:
        d, now, attempts = self.ex.decision, time.time(), self.ex.attempts
        final = answered or (attempts[-1] if attempts else None)
        base = {"ts": now, "request_id": self.request_id, "tenant": self.ex.tenant.name,
                "query": self.query.text, "category": self.query.category,
                "router": d.router, "policy": d.policy, "strategy": self.described,
                "ranking": d.ranking, "predicted": d.predicted, "outcome": None}
        if self.ex.trace:
            base["cascade"] = self.ex.trace
        return [{**base, "expert": a.expert, "attempt": a.index, "verdict": a.verdict,
                 "final": a is final, "purpose": a.purpose, "stream": a.stream,
                 "cost_usd": a.cost_usd,
                 "latency_s": round(a.latency_s, 6), "prompt_tokens": a.usage.prompt_tokens,
                 "completion_tokens": a.usage.completion_tokens, "status": a.status,
                 "error": a.error, **({"note": a.note} if a.note else {})} for a in attempts]


async def body_reply(rec: Recorder, outcome: Outcome, cache_state: str | None) -> Reply:
    """The accepted body with the routing extension (and the expert's name) in it; for a
    streaming caller (a cascade's accepted answer came whole) replayed as SSE events."""
    assert outcome.body is not None
    a = outcome.attempt
    await rec.ex.close()
    ext = rec.extension(a)
    obj = outcome.body.json()
    upstream_model = obj.get("model") if isinstance(obj, dict) else None
    raw = outcome.body.raw
    if isinstance(upstream_model, str):
        raw = Renamer(upstream_model, a.expert)(raw)
    body = splice_front(raw, b"coe_routing", dumps(ext))
    reply = Reply(rec.ex.decision, a.expert, request_id=rec.request_id, cache=cache_state)
    if rec.ex.request.stream and isinstance(obj, dict):
        response = {**obj, "model": a.expert, "coe_routing": ext}
        reply.stream = _replay([Event.of(c).raw for c in response_to_chunks(
            response, rec.ex.request.wants_usage)])
    else:
        reply.body = body
    rec.done(200, a)
    if rec.cache.wanted and isinstance(obj, dict):
        await rec.cache.store({**obj, "model": a.expert, "coe_routing": ext},
                              raw=None if rec.ex.request.stream else body)
    return reply


def stream_reply(rec: Recorder, outcome: Outcome, cache_state: str | None) -> Reply:
    return Reply(rec.ex.decision, outcome.attempt.expert, stream=_relay(rec, outcome),
                 request_id=rec.request_id, cache=cache_state)


async def _relay(rec: Recorder, outcome: Outcome) -> AsyncIterator[bytes]:
    """The first event with the extension, the rest verbatim, then ``[DONE]``; an upstream
    failure after the first byte becomes an error event (the answer so far stays sent)."""
    a, first, rest = outcome.attempt, outcome.first, outcome.rest
    assert first is not None and rest is not None
    wants_usage = rec.ex.request.wants_usage
    kept: list[tuple[Event, bytes, bool]] | None = [] if rec.cache.wanted else None
    obj = first.json()
    rename = Renamer(str(obj.get("model") or a.expert) if isinstance(obj, dict) else a.expert,
                     a.expert)
    status, usage, relayed = 200, None, 0
    try:
        if first.has_usage:
            usage = obj.get("usage")
        out = b"data: " + splice_front(rename(first.data), b"coe_routing",
                                       dumps(rec.extension(a))) + b"\n\n"
        if kept is not None:
            kept.append((first, out, False))
        yield out
        async for ev in rest:
            usage_only = False
            if ev.has_usage:
                usage = ev.json().get("usage")
                usage_only = ev.usage_only()
            elif ev.has_error:
                raise UpstreamError(f"expert {a.expert} sent an error in its stream: "
                                    f"{str(ev.json().get('error'))[:300]}")
            out = ev.raw if rename.noop else b"data: " + rename(ev.data) + b"\n\n"
            if kept is not None:
                kept.append((ev, out, usage_only))
            if usage_only and not wants_usage:
                continue
            relayed += 1
            yield out
    except GatewayError as exc:
        status = exc.status_code
        yield b"data: " + dumps(exc.to_body()) + b"\n\n"
    except BaseException:  # the client went away (cancelled) mid-stream
        status = 499
        raise
    finally:
        if usage is None and status != 200:  # broke before its usage: what was relayed
            usage = {"prompt_tokens": estimate_prompt_tokens(rec.ex.request),
                     "completion_tokens": relayed}
            a.note["usage_estimated"] = True
        await asyncio.shield(_end(rec, a, status, usage, rest))
    yield DONE
    if kept is not None and status == 200:
        events = [ev for ev, _, _ in kept]
        response = _assembled(events, a.expert, rec.extension(a))
        await rec.cache.store(response, chunks_of(events),
                              events=[(out, flag) for _, out, flag in kept])


async def _end(rec: Recorder, a: Attempt, status: int, usage: Any, rest: Any) -> None:
    aclose = getattr(rest, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - closing a broken upstream stream
            pass
    await rec.ex.finish(a, status, usage=usage)
    await rec.ex.close()
    rec.done(status, a if status == 200 else None)


def _assembled(events: list[Event], expert: str, ext: dict[str, Any]) -> dict[str, Any]:
    from coe_gateway.cache_stream import assemble_stream

    response = assemble_stream(chunks_of(events))
    response.update(model=expert, coe_routing=ext)
    return response


def replay(decision: Decision, expert: str, hit: CacheHit, request: ChatRequest) -> Reply:
    """A cache hit as it was sent (body) or streamed (events)."""
    reply = Reply(decision=decision, expert=expert, cache=hit.kind)
    if request.stream:
        sent = hit.event_bytes(request.wants_usage)
        reply.stream = _replay(sent if sent is not None else [
            Event.of(c).raw for c in hit.stream(request.wants_usage)])
    else:
        reply.body = hit.raw if hit.raw is not None else dumps(hit.response)
    return reply


async def _replay(events: list[bytes]) -> AsyncIterator[bytes]:
    for ev in events:
        yield ev
    yield DONE
