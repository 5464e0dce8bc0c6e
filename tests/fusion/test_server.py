"""The fused model's OpenAI server (coe_gateway.fusion.server) for real: an untrained fused
model of the two shipped experts (it answers exactly as its frozen primary, SmolLM2), saved,
loaded and served by uvicorn in a thread; the real HTTP API, plain and streamed, errors,
the wait queue, and a client that leaves mid-stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from coe_gateway.fusion.config import MotConfig
from coe_gateway.fusion.cpus import cpu_list
from coe_gateway.fusion.experts import FrozenExpert
from coe_gateway.fusion.generate import Generation, Sampling
from coe_gateway.fusion.model import MixtureOfThoughts
from coe_gateway.fusion.server import FusedServer, create_app, parse_args
from coe_gateway.fusion.store import load, save
from coe_gateway.testing.servers import serve_in_thread

from .conftest import STATIC

NAME = "mot-test"
SMOL, GEMMA = "smollm2-135m-instruct", "gemma-3-270m"
ASK = [{"role": "user", "content": "What is the capital of France?"}]
LONG = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, experts: list[FrozenExpert],
          models_dir: Path) -> MixtureOfThoughts:
    """An untrained fused model, saved and loaded back as the server would (on the
    session's already loaded experts)."""
    path = tmp_path_factory.mktemp("mot")
    cfg = MotConfig(encoder=STATIC)
    save(MixtureOfThoughts(experts, cfg, 256), path, {"untrained": True})
    return load(path, models_dir, experts=experts)


@pytest.fixture(scope="module")
def server(model: MixtureOfThoughts) -> Iterator[tuple[str, FusedServer]]:
    app = create_app(model, NAME, max_queue=1)
    with serve_in_thread(app) as url:
        yield url, app.state.fused


@dataclass
class Reference:
    gen: Generation
    text: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gen, name)


@pytest.fixture(scope="module")
def reference(model: MixtureOfThoughts) -> Reference:
    """What the fused model answers greedily, run directly (no server)."""
    gen = Generation(model, ASK, Sampling(max_tokens=8, temperature=0), ASK[0]["content"])
    return Reference(gen, "".join(gen))


def chat(url: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json={"model": NAME, **body}, timeout=300)


def sse(response: httpx.Response) -> list[Any]:
    """The data of every event, ``[DONE]`` as the string."""
    out: list[Any] = []
    for block in response.text.split("\n\n"):
        if block:
            assert block.startswith("data: "), block
            data = block[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def wait_idle(srv: FusedServer, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while srv.runner.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.runner.pending == 0


def test_health_and_models(server: tuple[str, FusedServer]) -> None:
    url, _ = server
    health = httpx.get(f"{url}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    cards = httpx.get(f"{url}/v1/models").json()
    assert cards["object"] == "list"
    assert [c["id"] for c in cards["data"]] == [NAME]
    assert cards["data"][0]["coe"] == {"kind": "mot", "experts": [SMOL, GEMMA]}


def test_untrained_body_is_the_frozen_primary_greedy_answer(
        server: tuple[str, FusedServer], reference: Reference) -> None:
    url, _ = server
    r = chat(url, messages=ASK, max_tokens=8, temperature=0)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == NAME
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": reference.text}
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] == reference.finish_reason
    assert body["usage"] == {"prompt_tokens": reference.prompt_tokens,
                             "completion_tokens": reference.completion_tokens,
                             "total_tokens": reference.prompt_tokens
                             + reference.completion_tokens}
    assert 0 < body["usage"]["completion_tokens"] <= 8
    ext = body["coe_fusion"]
    assert ext == {"fused": True, "primary": SMOL, "active": [SMOL, GEMMA],
                   "peer_tokens": reference.peer_tokens}
    assert ext["peer_tokens"] > 0


def test_stream_chunks_usage_and_done(server: tuple[str, FusedServer],
                                      reference: Reference) -> None:
    url, _ = server
    r = chat(url, messages=ASK, max_completion_tokens=8, temperature=0, stream=True,
             stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == NAME for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    first, finish, usage = chunks[0], chunks[-2], chunks[-1]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["coe_fusion"]["fused"] is True
    assert first["coe_fusion"]["primary"] == SMOL
    assert first["coe_fusion"]["active"] == [SMOL, GEMMA]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:-2])
    assert text == reference.text
    assert finish["choices"][0]["finish_reason"] == reference.finish_reason
    assert finish["coe_fusion"]["peer_tokens"] == reference.peer_tokens
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == reference.completion_tokens
    assert usage["usage"]["prompt_tokens"] == reference.prompt_tokens


def test_stream_without_include_usage_has_no_usage_chunk(server: tuple[str, FusedServer]
                                                         ) -> None:
    url, _ = server
    events = sse(chat(url, messages=ASK, max_tokens=2, temperature=0, stream=True))
    assert events[-1] == "[DONE]"
    assert all(c["choices"] and "usage" not in c for c in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "length"


def test_stop_string_cuts_the_answer(server: tuple[str, FusedServer],
                                     reference: Reference) -> None:
    url, _ = server
    full = reference.text
    words = full.split()
    assert len(words) >= 2, full
    stop = " " + words[1]
    body = chat(url, messages=ASK, max_tokens=8, temperature=0, stop=[stop], seed=3).json()
    assert body["choices"][0]["message"]["content"] == full[:full.find(stop)]
    assert body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(("payload", "status", "param"), [
    ({"messages": ASK, "temperature": 5}, 400, "temperature"),
    ({"model": NAME}, 400, "messages"),
    ({"messages": [{"content": "hi"}]}, 400, "messages[0].role"),
    ({"messages": ASK, "n": 2}, 400, "n"),
    ({"model": "other", "messages": ASK}, 404, "model"),
])
def test_invalid_requests_get_openai_errors(server: tuple[str, FusedServer],
                                            payload: dict[str, Any], status: int,
                                            param: str) -> None:
    url, _ = server
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": NAME, **payload})
    assert r.status_code == status
    err = r.json()["error"]
    assert err["param"] == param and err["message"] and "type" in err


def test_unparsable_body_is_400(server: tuple[str, FusedServer]) -> None:
    url, _ = server
    r = httpx.post(f"{url}/v1/chat/completions", content=b"{nope",
                   headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def _open_stream(client: httpx.Client, url: str, stack: Any, **body: Any) -> httpx.Response:
    request = client.build_request("POST", f"{url}/v1/chat/completions",
                                   json={"model": NAME, "stream": True, **body})
    response = client.send(request, stream=True)
    stack.callback(response.close)
    return response


def _first_content(response: httpx.Response) -> str:
    for line in response.iter_lines():
        if line.startswith("data: ") and '"content":"' in line and '"role"' not in line:
            return line
    raise AssertionError("the stream ended before any text")


def test_client_leaving_mid_stream_cancels_and_server_stays_healthy(
        server: tuple[str, FusedServer]) -> None:
    import contextlib

    url, srv = server
    wait_idle(srv)
    before = len(srv.runner.finished)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client(timeout=300))
        response = _open_stream(client, url, stack, messages=LONG, max_tokens=200,
                                temperature=0)
        assert response.status_code == 200
        _first_content(response)
    # the connection is closed: the generation stops within a token or so
    wait_idle(srv)
    gen = srv.runner.finished[-1]
    assert len(srv.runner.finished) == before + 1
    assert gen.finish_reason == "cancelled"
    assert 0 < gen.completion_tokens < 50
    health = httpx.get(f"{url}/health").json()
    assert health["finished"]["cancelled"] >= 1 and health["pending"] == 0
    r = chat(url, messages=ASK, max_tokens=2, temperature=0)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2


def test_client_leaving_a_plain_request_cancels_it(server: tuple[str, FusedServer]) -> None:
    url, srv = server
    wait_idle(srv)
    with pytest.raises(httpx.ReadTimeout):  # httpx closes the connection
        httpx.post(f"{url}/v1/chat/completions", timeout=httpx.Timeout(300, read=1.5),
                   json={"model": NAME, "messages": LONG, "max_tokens": 200, "temperature": 0})
    wait_idle(srv)
    gen = srv.runner.finished[-1]
    assert gen.finish_reason == "cancelled" and gen.completion_tokens < 200


def test_full_queue_is_503_with_retry_after(server: tuple[str, FusedServer]) -> None:
    import contextlib

    url, srv = server
    wait_idle(srv)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client(timeout=300))
        running = _open_stream(client, url, stack, messages=LONG, max_tokens=200)
        _first_content(running)  # it runs
        waiting = _open_stream(client, url, stack, messages=ASK, max_tokens=2)
        assert waiting.status_code == 200 and srv.runner.pending == 2  # max_queue is 1
        refused = chat(url, messages=ASK, max_tokens=2)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "queue_full"
    wait_idle(srv)  # both clients left: the running one stops, the waiting one never starts
    assert [g.finish_reason for g in list(srv.runner.finished)[-2:]] == ["cancelled"] * 2
    assert srv.runner.finished[-1].completion_tokens == 0


def test_cli_arguments_parse_without_side_effects() -> None:
    args = parse_args(["--model", "/x/m", "--served-model-name", "m", "--port", "9",
                       "--cpus", "0-1", "--max-queue", "3"])
    assert (args.model, args.served_model_name, args.port, args.max_queue) == (
        Path("/x/m"), "m", 9, 3)
    assert args.host == "127.0.0.1" and args.threads is None
    assert cpu_list(args.cpus) == [0, 1] and cpu_list("3,0-1, 5") == [0, 1, 3, 5]
    with pytest.raises(ValueError):
        cpu_list("2-1")
