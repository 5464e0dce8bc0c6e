"""The response cache: exact (deterministic requests) and semantic (similar prompts), per tenant.

**Exact**: a request is cacheable when it is deterministic, ``temperature == 0`` or a ``seed``
is set; its key is the SHA-256 of the canonical request (sorted-key JSON without ``stream``,
``stream_options`` and ``user``), under the tenant's name, so tenants never share answers.

**Semantic** (opt-in per tenant): the conversation text is embedded and compared (cosine)
with the tenant's earlier prompts of the same scope (model, tools, response format, n, the
``coe`` routing options, and the content hashes of the images); the
best one at or above the threshold is a hit. With Redis, every replica appends its entries to
a per-tenant Redis stream and keeps an in-process mirror of the vectors it reads from it, so
a lookup costs one ``XRANGE`` of what is new and one ``GET`` of the hit.

Both store the full response (and the chunks when it was streamed) with a TTL and replay
either form: a streamed request gets the stored chunks (or chunks made from the response),
a plain one the stored body. Hits, misses and bypasses are Prometheus counters.

**Fail mode**: when Redis errors the cache is bypassed (a lookup is a miss, a store is
skipped) and not tried again for ``retry_s`` seconds; requests are served as if uncached.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter

from coe_gateway.cache_stream import response_to_chunks, select_chunks

log = logging.getLogger(__name__)

IGNORED_FIELDS = frozenset({"stream", "stream_options", "user"})
SCOPE_FIELDS = ("model", "tools", "tool_choice", "response_format", "n", "functions", "coe")

Embedder = Callable[[Sequence[str]], np.ndarray]
"""Texts -> (B, D) float32 embeddings (normalised here before use)."""


# -- keys -------------------------------------------------------------------------------------


def canonical(request: Mapping[str, Any], drop: frozenset[str] = IGNORED_FIELDS) -> str:
    """Sorted-key compact JSON of the request without the fields that do not change the answer."""
    body = {k: v for k, v in request.items() if k not in drop}
    try:
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except TypeError:  # what orjson refuses (integers past 64 bits): the standard encoder
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def is_deterministic(request: Mapping[str, Any]) -> bool:
    """``temperature == 0`` or a ``seed``: the exact cache may answer it."""
    temp = request.get("temperature")
    return request.get("seed") is not None or (temp is not None and float(temp) == 0.0)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def image_digests(request: Mapping[str, Any]) -> list[str]:
    """SHA-256 of every image part's URL, in order (a ``data:`` URL is the image itself)."""
    out = []
    for msg in request.get("messages") or []:
        content = msg.get("content") if isinstance(msg, Mapping) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, Mapping) and part.get("type") == "image_url":
                url = str((part.get("image_url") or {}).get("url") or "")
                out.append(_sha(url))
    return out


def scope_of(request: Mapping[str, Any]) -> str:
    """What must be equal besides the text for a semantic hit: the scope fields and the
    images (two requests with the same words about different images are different)."""
    scope = {k: request.get(k) for k in SCOPE_FIELDS}
    scope["images"] = image_digests(request)
    return _sha(canonical(scope))[:16]


def request_text(request: Mapping[str, Any]) -> str:
    """The conversation as one string ("role: text" lines) for the semantic cache."""
    lines = []
    for msg in request.get("messages") or []:
        content = msg.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        lines.append(f"{msg.get('role', '')}: {content or ''}")
    return "\n".join(lines)


# -- settings, hits, metrics ------------------------------------------------------------------


@dataclass(frozen=True)
class CacheSettings:
    """What the cache does for one tenant (the gateway's ``cache`` section merged with the
    tenant's own)."""

    exact: bool = True
    semantic: bool = False
    semantic_threshold: float = 0.95
    ttl_s: int = 3600


@dataclass(frozen=True)
class CacheHit:
    """A stored answer: the response (and its chunks when streamed) and, when the gateway
    kept them, the exact bytes it sent (``raw``) or the SSE events it relayed (``events``:
    each event's bytes and whether it is the usage-only event), so that a hit can be
    replayed byte for byte."""

    kind: Literal["exact", "semantic"]
    response: dict[str, Any]
    chunks: list[dict[str, Any]] | None = None
    similarity: float | None = None
    raw: bytes | None = None
    events: list[tuple[bytes, bool]] | None = None

    def event_bytes(self, include_usage: bool) -> list[bytes] | None:
        """The stored SSE events as relayed (the usage event only when asked), or None."""
        if self.events is None:
            return None
        return [ev for ev, usage_only in self.events if include_usage or not usage_only]

    def stream(self, include_usage: bool = False) -> list[dict[str, Any]]:
        """The chunks to replay as SSE (the stored ones, else made from the response)."""
        if self.chunks is not None:
            return select_chunks(self.chunks, self.response, include_usage)
        return response_to_chunks(self.response, include_usage)


class CacheMetrics:
    """Prometheus counters: lookups by kind and result (hit, miss, bypass), stores by kind."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.lookups = Counter("coe_cache_lookups", "Response cache lookups",
                               ["kind", "result"], registry=registry)
        self.stores = Counter("coe_cache_stores", "Responses stored in the cache",
                              ["kind"], registry=registry)

    def count(self, kind: str, result: str) -> None:
        self.lookups.labels(kind=kind, result=result).inc()

    def value(self, kind: str, result: str) -> float:
        return float(self.lookups.labels(kind=kind, result=result)._value.get())


# -- backends ---------------------------------------------------------------------------------


class CacheBackend(Protocol):
    """Key-value with TTL plus append-only per-tenant logs of semantic entries."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: int) -> None: ...

    async def append(self, log_key: str, fields: Mapping[str, bytes], max_len: int) -> None: ...

    async def read_after(self, log_key: str, after: str | None
                         ) -> list[tuple[str, dict[str, bytes]]]: ...

    async def close(self) -> None: ...


class MemoryBackend:
    """In-process backend (no Redis configured): an LRU of at most ``max_entries`` values."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._values: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._logs: dict[str, list[tuple[int, dict[str, bytes]]]] = {}
        self._next_id = 0

    async def get(self, key: str) -> bytes | None:
        item = self._values.get(key)
        if item is None or item[0] <= time.time():
            self._values.pop(key, None)
            return None
        self._values.move_to_end(key)
        return item[1]

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        self._values[key] = (time.time() + ttl_s, value)
        self._values.move_to_end(key)
        while len(self._values) > self.max_entries:
            self._values.popitem(last=False)

    async def append(self, log_key: str, fields: Mapping[str, bytes], max_len: int) -> None:
        self._next_id += 1
        entries = self._logs.setdefault(log_key, [])
        entries.append((self._next_id, dict(fields)))
        del entries[:-max_len]

    async def read_after(self, log_key: str, after: str | None
                         ) -> list[tuple[str, dict[str, bytes]]]:
        last = int(after or 0)
        return [(str(i), f) for i, f in self._logs.get(log_key, []) if i > last]

    async def close(self) -> None:
        return None


class RedisBackend:
    """Redis backend: ``SET EX`` values and one stream per tenant for semantic entries.

    ``redis`` must be a ``redis.asyncio.Redis`` with ``decode_responses=False``."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    @classmethod
    def from_url(cls, url: str) -> RedisBackend:
        from coe_gateway.redis_client import connect

        return cls(connect(url, connect_timeout_s=0.25, timeout_s=0.5,
                           decode_responses=False))

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self.redis.get(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        await self.redis.set(key, value, ex=ttl_s)

    async def append(self, log_key: str, fields: Mapping[str, bytes], max_len: int) -> None:
        await self.redis.xadd(log_key, dict(fields), maxlen=max_len, approximate=True)

    async def read_after(self, log_key: str, after: str | None
                         ) -> list[tuple[str, dict[str, bytes]]]:
        rows = await self.redis.xrange(log_key, min="-" if after is None else f"({after}")
        return [(rid.decode() if isinstance(rid, bytes) else rid,
                 {(k.decode() if isinstance(k, bytes) else k): v for k, v in f.items()})
                for rid, f in rows]

    async def close(self) -> None:
        await self.redis.aclose()


# -- the semantic index mirror ----------------------------------------------------------------


@dataclass
class _Mirror:
    """One tenant's semantic entries as this process knows them.

    vecs: (N, D) float32, unit norm; ids, scopes: N strings; expires: (N,) unix seconds
    """

    last: str | None = None
    ids: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    expires: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vecs: np.ndarray | None = None

    def add(self, rows: list[tuple[str, dict[str, bytes]]], max_len: int) -> None:
        if not rows:
            return
        self.last = rows[-1][0]
        new = np.stack([np.frombuffer(f["vec"], dtype=np.float32) for _, f in rows])  # (n, D)
        self.vecs = new if self.vecs is None else np.concatenate([self.vecs, new])
        self.ids += [f["id"].decode() for _, f in rows]
        self.scopes += [f["scope"].decode() for _, f in rows]
        self.expires = np.concatenate([self.expires, [float(f["exp"]) for _, f in rows]])
        self._keep(self.expires > time.time(), max_len)

    def _keep(self, mask: np.ndarray, max_len: int) -> None:
        idx = np.flatnonzero(mask)[-max_len:]
        assert self.vecs is not None
        self.vecs, self.expires = self.vecs[idx], self.expires[idx]
        self.ids = [self.ids[i] for i in idx]
        self.scopes = [self.scopes[i] for i in idx]

    def best(self, vec: np.ndarray, scope: str) -> tuple[str, float] | None:
        """The most similar live entry of ``scope`` and its cosine similarity."""
        if self.vecs is None or not self.ids:
            return None
        sims = self.vecs @ vec  # (N,)
        ok = (np.array(self.scopes) == scope) & (self.expires > time.time())
        if not ok.any():
            return None
        sims = np.where(ok, sims, -np.inf)
        i = int(np.argmax(sims))
        return self.ids[i], float(sims[i])


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    return v / max(float(np.linalg.norm(v)), 1e-12)


# -- the cache --------------------------------------------------------------------------------


class ResponseCache:
    """Exact then semantic lookup, and store, for one gateway process."""

    def __init__(self, backend: CacheBackend, *, metrics: CacheMetrics | None = None,
                 embedder: Embedder | None = None, prefix: str = "coe:",
                 retry_s: float = 5.0, max_semantic_entries: int = 2000) -> None:
        self.backend = backend
        self.metrics = metrics or CacheMetrics()
        self.embedder = embedder
        self.prefix = prefix
        self.retry_s = retry_s
        self.max_semantic_entries = max_semantic_entries
        self._down_until = 0.0
        self._mirrors: dict[str, _Mirror] = {}

    # keys
    def exact_key(self, tenant: str, request: Mapping[str, Any]) -> str:
        return f"{self.prefix}cache:{{{tenant}}}:x:{_sha(canonical(request))}"

    def _sem_key(self, tenant: str, entry: str) -> str:
        return f"{self.prefix}cache:{{{tenant}}}:s:{entry}"

    def _log_key(self, tenant: str) -> str:
        return f"{self.prefix}cache:{{{tenant}}}:slog"

    # fail mode
    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        if self.available:
            log.warning("cache backend failed, bypassing the cache for %.0f s: %r",
                        self.retry_s, exc)
        self._down_until = time.monotonic() + self.retry_s

    async def _guard(self, coro: Any) -> Any:
        try:
            return await coro
        except (OSError, ConnectionError, TimeoutError, _redis_error()) as exc:
            self._failed(exc)
            return _FAILED

    # lookup
    async def lookup(self, tenant: str, request: Mapping[str, Any], settings: CacheSettings,
                     *, text: str | None = None, embedding: np.ndarray | None = None
                     ) -> CacheHit | None:
        """The cached answer of this request, or None. Never raises on a backend failure."""
        if settings.exact and is_deterministic(request):
            hit = await self._lookup_exact(tenant, request)
            if hit is not None:
                return hit
        if settings.semantic:
            return await self._lookup_semantic(tenant, request, settings, text, embedding)
        return None

    async def _lookup_exact(self, tenant: str, request: Mapping[str, Any]) -> CacheHit | None:
        if not self.available:
            self.metrics.count("exact", "bypass")
            return None
        raw = await self._guard(self.backend.get(self.exact_key(tenant, request)))
        if raw is _FAILED:
            self.metrics.count("exact", "bypass")
            return None
        self.metrics.count("exact", "miss" if raw is None else "hit")
        return None if raw is None else _decode("exact", raw)

    async def _lookup_semantic(self, tenant: str, request: Mapping[str, Any],
                               settings: CacheSettings, text: str | None,
                               embedding: np.ndarray | None) -> CacheHit | None:
        if not self.available or (self.embedder is None and embedding is None):
            self.metrics.count("semantic", "bypass")
            return None
        vec = await self._embed(request, text, embedding)
        mirror = await self._sync(tenant)
        if mirror is None:
            self.metrics.count("semantic", "bypass")
            return None
        found = mirror.best(vec, scope_of(request))
        raw = None
        if found is not None and found[1] >= settings.semantic_threshold:
            raw = await self._guard(self.backend.get(self._sem_key(tenant, found[0])))
        if raw is _FAILED:
            self.metrics.count("semantic", "bypass")
            return None
        self.metrics.count("semantic", "miss" if raw is None else "hit")
        return None if raw is None or found is None else _decode("semantic", raw, found[1])

    async def _embed(self, request: Mapping[str, Any], text: str | None,
                     embedding: np.ndarray | None) -> np.ndarray:
        if embedding is not None:
            return _unit(embedding)
        assert self.embedder is not None
        embed = self.embedder
        out = await asyncio.to_thread(lambda: embed([text or request_text(request)]))
        return _unit(out[0])

    async def _sync(self, tenant: str) -> _Mirror | None:
        mirror = self._mirrors.setdefault(tenant, _Mirror())
        rows = await self._guard(self.backend.read_after(self._log_key(tenant), mirror.last))
        if rows is _FAILED:
            return None
        mirror.add(rows, self.max_semantic_entries)
        return mirror

    # store
    async def store(self, tenant: str, request: Mapping[str, Any], settings: CacheSettings,
                    response: Mapping[str, Any], chunks: Sequence[Mapping[str, Any]] | None = None,
                    *, text: str | None = None, embedding: np.ndarray | None = None,
                    raw: bytes | None = None,
                    events: Sequence[tuple[bytes, bool]] | None = None) -> None:
        """Keep a finished answer for later requests (a no-op when not cacheable); ``raw`` /
        ``events`` are the bytes as sent, replayed as they are."""
        body = self.encode(response, chunks, raw=raw, events=events) if self.available \
            else None
        if body is None:
            return
        if settings.exact and is_deterministic(request):
            done = await self._guard(self.backend.set(self.exact_key(tenant, request), body,
                                                      settings.ttl_s))
            if done is not _FAILED:
                self.metrics.stores.labels(kind="exact").inc()
        if settings.semantic and (self.embedder is not None or embedding is not None):
            await self._store_semantic(tenant, request, settings, body, text, embedding)

    @staticmethod
    def encode(response: Mapping[str, Any], chunks: Sequence[Mapping[str, Any]] | None = None,
               *, raw: bytes | None = None,
               events: Sequence[tuple[bytes, bool]] | None = None) -> bytes | None:
        """What the cache stores of an answer (None: not a whole answer, not cached)."""
        if not _complete(response):
            return None
        stored: dict[str, Any] = {"response": response, "chunks": chunks}
        if raw is not None:
            stored["raw"] = raw.decode("utf-8")
        if events is not None:
            stored["events"] = [[ev.decode("utf-8"), flag] for ev, flag in events]
        return _dumps(stored)

    # the exact lookup and store made by the ledger's round trips (coe_gateway.request_guard)
    def exact_only_key(self, tenant: str, request: Mapping[str, Any],
                       settings: CacheSettings) -> str | None:
        """The exact key when this request's whole cache step is one exact ``GET`` (and
        ``SET``) that another round trip may carry: exact on, semantic off, deterministic,
        the backend not failed."""
        if settings.exact and not settings.semantic and is_deterministic(request) \
                and self.available:
            return self.exact_key(tenant, request)
        return None

    def found(self, raw: bytes | None) -> CacheHit | None:
        """Count an exact lookup made elsewhere (a hit when ``raw``) and decode it."""
        self.metrics.count("exact", "miss" if raw is None else "hit")
        return None if raw is None else _decode("exact", raw)

    def bypassed(self, exc: Exception | None) -> None:
        """Count an exact lookup that could not be made (its backend failed with ``exc``)."""
        if exc is not None:
            self._failed(exc)
        self.metrics.count("exact", "bypass")

    def stored(self) -> None:
        """Count an exact store made elsewhere."""
        self.metrics.stores.labels(kind="exact").inc()

    async def _store_semantic(self, tenant: str, request: Mapping[str, Any],
                              settings: CacheSettings, body: bytes, text: str | None,
                              embedding: np.ndarray | None) -> None:
        vec = await self._embed(request, text, embedding)
        entry = _sha(canonical(request))[:32]
        if await self._guard(self.backend.set(self._sem_key(tenant, entry), body,
                                              settings.ttl_s)) is _FAILED:
            return
        fields = {"id": entry.encode(), "scope": scope_of(request).encode(),
                  "vec": vec.astype(np.float32).tobytes(),
                  "exp": str(time.time() + settings.ttl_s).encode()}
        done = await self._guard(self.backend.append(self._log_key(tenant), fields,
                                                     self.max_semantic_entries))
        if done is not _FAILED:
            self.metrics.stores.labels(kind="semantic").inc()

    async def close(self) -> None:
        await self.backend.close()


_FAILED = object()


def _dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (orjson: about 9x faster here than the standard encoder on an
    answer; the standard one for what orjson refuses, such as integers past 64 bits)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _redis_error() -> type[Exception]:
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - redis is a dependency
        return OSError
    return RedisError


def _complete(response: Mapping[str, Any]) -> bool:
    """Only whole answers are cached: every choice has a finish reason."""
    choices = response.get("choices") or []
    return bool(choices) and all(c.get("finish_reason") for c in choices)


def _decode(kind: Literal["exact", "semantic"], raw: bytes,
            similarity: float | None = None) -> CacheHit:
    data = orjson.loads(raw)
    events = data.get("events")
    return CacheHit(kind, data["response"], data.get("chunks"), similarity,
                    raw=data["raw"].encode("utf-8") if data.get("raw") is not None else None,
                    events=None if events is None else [(ev.encode("utf-8"), bool(flag))
                                                        for ev, flag in events])
