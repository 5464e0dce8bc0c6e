"""The response cache: keys, exact and semantic hits, SSE replay, TTLs, metrics, fail mode."""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis

from coe_gateway.cache import (
    CacheMetrics,
    CacheSettings,
    MemoryBackend,
    RedisBackend,
    ResponseCache,
    canonical,
    is_deterministic,
)
from coe_gateway.cache_stream import assemble_stream, response_to_chunks

EXACT = CacheSettings(exact=True, semantic=False, ttl_s=60)
SEMANTIC = CacheSettings(exact=False, semantic=True, semantic_threshold=0.95, ttl_s=60)


def request(text: str = "What is 2+2?", **kw: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}],
            "temperature": 0, **kw}


RESPONSE = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "small",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
    "coe_routing": {"expert": "small", "policy": "trade-off"},
}


def fake_embedder(vectors: dict[str, Sequence[float]]) -> Any:
    """A fake embedder: each known text has a fixed vector (unknown texts are orthogonal)."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        return np.array([vectors.get(t, [0.0, 0.0, 1.0]) for t in texts], dtype=np.float32)

    return embed


def at_cos(c: float) -> list[float]:
    """A unit vector at cosine ``c`` from [1, 0, 0]."""
    return [c, math.sqrt(1 - c * c), 0.0]


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, redis_url: str) -> Any:
    if request.param == "memory":
        return MemoryBackend()
    request.getfixturevalue("redis_prefix")
    return RedisBackend(aioredis.from_url(redis_url))


def make_cache(backend: Any, request: pytest.FixtureRequest, **kw: Any) -> ResponseCache:
    prefix = request.getfixturevalue("redis_prefix") if isinstance(backend, RedisBackend) \
        else "mem:"
    return ResponseCache(backend, prefix=prefix, **kw)


def test_canonical_and_determinism() -> None:
    a = {"b": 1, "a": [1, {"y": 2, "x": 1}], "stream": True, "user": "u"}
    assert canonical(a) == '{"a":[1,{"x":1,"y":2}],"b":1}'
    assert is_deterministic({"temperature": 0}) and is_deterministic({"seed": 7})
    assert not is_deterministic({}) and not is_deterministic({"temperature": 0.7})


async def test_exact_hit_returns_the_identical_body(backend: Any,
                                                     request: pytest.FixtureRequest) -> None:
    cache = make_cache(backend, request)
    assert await cache.lookup("acme", request_(), EXACT) is None
    await cache.store("acme", request_(), EXACT, RESPONSE)
    hit = await cache.lookup("acme", request_(stream=True, user="other"), EXACT)
    assert hit is not None and hit.kind == "exact" and hit.response == RESPONSE
    # another tenant, another prompt, other sampling: misses
    assert await cache.lookup("other", request_(), EXACT) is None
    assert await cache.lookup("acme", request_("What is 3+3?"), EXACT) is None
    assert await cache.lookup("acme", request_(max_tokens=5), EXACT) is None
    assert cache.metrics.value("exact", "hit") == 1
    assert cache.metrics.value("exact", "miss") == 4


def request_(text: str = "What is 2+2?", **kw: Any) -> dict[str, Any]:
    return request(text, **kw)


async def test_non_deterministic_requests_are_not_cached_exactly(
        backend: Any, request: pytest.FixtureRequest) -> None:
    cache = make_cache(backend, request)
    hot = request_(temperature=0.8)
    await cache.store("acme", hot, EXACT, RESPONSE)
    assert await cache.lookup("acme", hot, EXACT) is None
    seeded = request_(temperature=0.8, seed=1)
    await cache.store("acme", seeded, EXACT, RESPONSE)
    assert await cache.lookup("acme", seeded, EXACT) is not None


async def test_incomplete_answers_are_not_stored(backend: Any,
                                                 request: pytest.FixtureRequest) -> None:
    cache = make_cache(backend, request)
    partial = copy.deepcopy(RESPONSE)
    partial["choices"][0]["finish_reason"] = None
    await cache.store("acme", request_(), EXACT, partial)
    assert await cache.lookup("acme", request_(), EXACT) is None


async def test_stream_hit_replays_the_identical_chunks(backend: Any,
                                                       request: pytest.FixtureRequest) -> None:
    cache = make_cache(backend, request)
    chunks = response_to_chunks(RESPONSE, include_usage=True)
    chunks[1]["choices"][0]["delta"]["content"] = "4"  # as streamed, token by token
    await cache.store("acme", request_(stream=True), EXACT, assemble_stream(chunks), chunks)
    hit = await cache.lookup("acme", request_(stream=True), EXACT)
    assert hit is not None
    assert hit.stream(include_usage=True) == chunks
    assert hit.stream(include_usage=False) == chunks[:-1]  # the usage chunk only when asked
    assert hit.response["choices"][0]["message"]["content"] == "4"


def test_chunks_and_response_round_trip() -> None:
    chunks = response_to_chunks(RESPONSE, include_usage=True)
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 4
    assert chunks[0]["coe_routing"] == RESPONSE["coe_routing"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == RESPONSE["usage"]
    assert assemble_stream(chunks) == {**RESPONSE}
    tool = {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [
        {"index": 0, "logprobs": None, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [
                {"id": "t1", "type": "function",
                 "function": {"name": "f", "arguments": "{\"x\": 1}"}}]}}]}
    assert assemble_stream(response_to_chunks(tool)) == tool


async def test_ttl_expires_entries(redis_url: str, redis_prefix: str) -> None:
    cache = ResponseCache(RedisBackend(aioredis.from_url(redis_url)), prefix=redis_prefix)
    await cache.store("acme", request_(), CacheSettings(ttl_s=1), RESPONSE)
    assert await cache.lookup("acme", request_(), EXACT) is not None
    await asyncio.sleep(1.2)
    assert await cache.lookup("acme", request_(), EXACT) is None
    await cache.close()


async def test_semantic_hits_and_misses_around_the_threshold(
        backend: Any, request: pytest.FixtureRequest) -> None:
    vectors = {"user: capital of France?": [1, 0, 0],
               "user: France's capital?": at_cos(0.96),
               "user: capital of Spain?": at_cos(0.94)}
    cache = make_cache(backend, request, embedder=fake_embedder(vectors))
    hot = {"temperature": 0.9}
    await cache.store("acme", request_("capital of France?", **hot), SEMANTIC, RESPONSE)
    hit = await cache.lookup("acme", request_("France's capital?", **hot), SEMANTIC)
    assert hit is not None and hit.kind == "semantic"
    assert hit.similarity == pytest.approx(0.96, abs=1e-5) and hit.response == RESPONSE
    assert await cache.lookup("acme", request_("capital of Spain?", **hot), SEMANTIC) is None
    lower = CacheSettings(exact=False, semantic=True, semantic_threshold=0.93)
    assert await cache.lookup("acme", request_("capital of Spain?", **hot), lower) is not None
    # another tenant or another scope (model, tools) never shares
    assert await cache.lookup("other", request_("France's capital?"), SEMANTIC) is None
    assert await cache.lookup("acme", {**request_("France's capital?"), "model": "large"},
                              SEMANTIC) is None
    # opt-in: a tenant without semantic caching gets nothing
    assert await cache.lookup("acme", request_("France's capital?", **hot), EXACT) is None
    assert cache.metrics.value("semantic", "hit") == 2
    assert cache.metrics.value("semantic", "miss") == 3


async def test_semantic_entries_are_shared_by_replicas(redis_url: str,
                                                       redis_prefix: str) -> None:
    embed = fake_embedder({"user: a": [1, 0, 0], "user: a'": at_cos(0.99)})
    one, two = (ResponseCache(RedisBackend(aioredis.from_url(redis_url)), prefix=redis_prefix,
                              embedder=embed) for _ in range(2))
    assert await two.lookup("acme", request_("a'"), SEMANTIC) is None  # mirror synced, empty
    await one.store("acme", request_("a"), SEMANTIC, RESPONSE)
    hit = await two.lookup("acme", request_("a'"), SEMANTIC)
    assert hit is not None and hit.response == RESPONSE
    await one.close()
    await two.close()


async def test_redis_down_bypasses_the_cache() -> None:
    dead = RedisBackend.from_url("redis://127.0.0.1:1/0")
    metrics = CacheMetrics()
    cache = ResponseCache(dead, metrics=metrics, retry_s=60,
                          embedder=fake_embedder({}))
    both = CacheSettings(exact=True, semantic=True)
    await cache.store("acme", request_(), both, RESPONSE)  # no error
    assert await cache.lookup("acme", request_(), both) is None
    assert not cache.available
    assert metrics.value("exact", "bypass") == 1 and metrics.value("semantic", "bypass") == 1
    await cache.close()


async def test_redis_stopped_and_started_during_the_test(private_redis: Any) -> None:
    cache = ResponseCache(RedisBackend.from_url(private_redis.url), retry_s=0.2)
    await cache.store("acme", request_(), EXACT, RESPONSE)
    assert await cache.lookup("acme", request_(), EXACT) is not None
    private_redis.stop()
    assert await cache.lookup("acme", request_(), EXACT) is None  # bypassed, no error
    await cache.store("acme", request_("other"), EXACT, RESPONSE)  # skipped, no error
    assert cache.metrics.value("exact", "bypass") >= 1
    private_redis.start()  # an empty Redis: the entries are gone, the cache works again
    await asyncio.sleep(0.3)
    assert await cache.lookup("acme", request_(), EXACT) is None
    await cache.store("acme", request_(), EXACT, RESPONSE)
    assert await cache.lookup("acme", request_(), EXACT) is not None
    await cache.close()


@pytest.mark.slow
async def test_semantic_cache_with_the_real_encoder() -> None:
    from coe_gateway.routers.embedding import get_encoder

    cache = ResponseCache(MemoryBackend(), embedder=get_encoder().encode)
    settings = CacheSettings(exact=False, semantic=True, semantic_threshold=0.9)
    await cache.store("acme", request_("What is the capital city of France?"), settings,
                      RESPONSE)
    near = await cache.lookup("acme", request_("what is the capital city of france"),
                              settings)
    far = await cache.lookup("acme", request_("How do I bake sourdough bread?"), settings)
    assert near is not None and near.similarity is not None and near.similarity > 0.9
    assert far is None


def _with_image(text: str, url: str) -> dict[str, Any]:
    return {"model": "auto", "temperature": 0.9, "messages": [{"role": "user", "content": [
        {"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}]}


async def test_semantic_cache_keys_images_by_content(
        backend: Any, request: pytest.FixtureRequest) -> None:
    # before the fix the semantic key saw only the text: another image got the same answer
    cache = make_cache(backend, request, embedder=fake_embedder({"user: what is in it?": [1, 0, 0]}))
    cat, dog = "data:image/png;base64,Y2F0", "data:image/png;base64,ZG9n"
    await cache.store("acme", _with_image("what is in it?", cat), SEMANTIC, RESPONSE)
    assert await cache.lookup("acme", _with_image("what is in it?", cat), SEMANTIC) is not None
    assert await cache.lookup("acme", _with_image("what is in it?", dog), SEMANTIC) is None
