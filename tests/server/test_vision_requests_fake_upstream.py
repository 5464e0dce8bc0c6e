"""Image requests end to end against fake vision upstreams: the image a vision expert receives
is byte-identical to what the client sent (data: URL; a remote URL passes through as sent),
text-only experts never get an image request, and every refused image is a 400 with its code
before anything is reserved, billed or sent upstream."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from coe_gateway.budget import Tenant
from coe_gateway.config import GatewayConfig
from coe_gateway.errors import GatewayError
from coe_gateway.gateway import Gateway
from coe_gateway.protocol import ChatRequest
from coe_gateway.server.app import create_app
from coe_gateway.testing.fake_backend import FakeBackend, fake_config, fake_gateway
from coe_gateway.testing.fake_upstream import FakeUpstream
from coe_gateway.testing.servers import serve_in_thread

EXPERTS = ["vlm-small", "vlm-large", "text-big"]  # priors rise: text-big ranks first


def jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 240)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


JPEG = jpeg()


def data_url(data: bytes, media_type: str = "image/jpeg") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def image_message(*urls: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "What is in the image?"},
                                         *[{"type": "image_url", "image_url": {"url": u}}
                                           for u in urls]]}]


def received_urls(body: dict[str, Any]) -> list[str]:
    return [p["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list)
            for p in m["content"] if p.get("type") == "image_url"]


def sha_of_data_url(url: str) -> str:
    return hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest()


def vision_config(experts: list[str] = EXPERTS, **images: Any) -> GatewayConfig:
    data = fake_config(experts).model_dump()
    for e in data["experts"]:
        e["capabilities"] = ["text", "vision"] if e["name"].startswith("vlm") else ["text"]
    data["images"] = {**data["images"], **images}
    return GatewayConfig.model_validate(data)


def gateway(cfg: GatewayConfig | None = None) -> tuple[Gateway, dict[str, FakeBackend]]:
    cfg = cfg or vision_config()
    backends = {e: FakeBackend(e) for e in cfg.expert_names}
    return fake_gateway(backends, cfg), backends


async def test_fake_vision_upstream_receives_the_data_url_image_intact() -> None:
    gw, backends = gateway()
    url = data_url(JPEG)
    for stream in (False, True):
        reply = await gw.chat(ChatRequest({"model": "auto", "messages": image_message(url),
                                           "stream": stream}))
        if reply.stream is not None:
            _ = [chunk async for chunk in reply.stream]
        assert reply.expert == "vlm-large"  # the best vision expert, not text-big
    assert backends["text-big"].calls == [] and backends["vlm-small"].calls == []
    for body in backends["vlm-large"].calls:
        assert received_urls(body) == [url]
        assert sha_of_data_url(received_urls(body)[0]) == hashlib.sha256(JPEG).hexdigest()
        assert body["messages"] == image_message(url)


async def test_fake_text_request_still_goes_to_the_text_expert() -> None:
    gw, backends = gateway()
    reply = await gw.chat(ChatRequest({"model": "auto", "messages": [
        {"role": "user", "content": "hello"}]}))
    assert reply.expert == "text-big" and len(backends["text-big"].calls) == 1


async def test_fake_no_vision_expert_is_a_clear_400() -> None:
    gw, backends = gateway(vision_config(["text-a", "text-b"]))
    with pytest.raises(GatewayError) as exc:
        await gw.chat(ChatRequest({"model": "auto", "messages": image_message(data_url(JPEG))}))
    assert (exc.value.status_code, exc.value.code) == (400, "capability_not_available")
    assert "vision" in exc.value.message
    assert all(not b.calls for b in backends.values())


async def test_fake_capability_is_checked_before_any_image_is_fetched() -> None:
    cfg = vision_config(remote={"enabled": True, "allow_hosts": ["images.invalid"]})
    gw, backends = gateway(cfg)
    remote = image_message("https://images.invalid/cat.jpg")  # fetching it would fail
    for model, tenant in (("text-big", None), ("auto", Tenant(name="t", allowed_experts=[
            "text-big"]))):
        with pytest.raises(GatewayError) as exc:
            await gw.chat(ChatRequest({"model": model, "messages": remote}), tenant)
        assert exc.value.code == "capability_not_available"
    reply = await gw.chat(ChatRequest({"model": "vlm-small",
                                       "messages": image_message(data_url(JPEG))}))
    assert reply.expert == "vlm-small" and len(backends["vlm-small"].calls) == 1


def bad_requests() -> list[tuple[list[str], dict[str, Any], str, str]]:
    """(image URLs, images config, code, param) of requests refused before routing."""
    p = "messages[0].content[{}].image_url.url"
    return [
        ([data_url(JPEG)] * 3, {"max_images": 2}, "too_many_images", p.format(3)),
        ([data_url(jpeg((300, 300)))], {"max_image_bytes": 1024}, "image_too_large",
         p.format(1)),
        ([data_url(JPEG), data_url(jpeg((200, 200)))], {"max_pixels": 10_000},
         "image_too_large", p.format(2)),
        ([data_url(JPEG[:200])], {}, "invalid_image", p.format(1)),
        (["data:image/jpeg;base64,@@@"], {}, "invalid_image", p.format(1)),
        (["https://images.example.com/cat.jpg"], {}, "remote_images_disabled", p.format(1)),
        (["https://images.example.com/cat.jpg"],
         {"remote": {"enabled": True, "allow_hosts": ["other.example.com"]}},
         "image_host_not_allowed", p.format(1)),
    ]


@pytest.mark.parametrize(("urls", "images", "code", "param"), bad_requests())
async def test_fake_refused_image_is_a_400_and_nothing_is_reserved_or_billed(
    urls: list[str], images: dict[str, Any], code: str, param: str,
) -> None:
    gw, backends = gateway(vision_config(**images))
    tenant = Tenant(name="t", budgets={"day_usd": 1.0})
    with pytest.raises(GatewayError) as exc:
        await gw.chat(ChatRequest({"model": "auto", "messages": image_message(*urls)}), tenant)
    body = exc.value.to_body()["error"]
    assert (exc.value.status_code, body["code"], body["param"]) == (400, code, param)
    assert all(not b.calls for b in backends.values())
    usage = await gw.tenancy.guard.ledger.usage("t", tenant.limits)
    assert usage[0].spent_usd == 0 and usage[0].reserved_usd == 0


def image_app(data: bytes) -> Any:
    """An ASGI app serving ``data`` as image/jpeg at any path."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"image/jpeg"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    return app


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, Any]]:
    """A gateway over HTTP with a fake vision upstream, a fake text upstream and a local
    image server (127.0.0.1: allowed by the test-only ``allow_private_networks``)."""
    vlm, text = FakeUpstream("vlm"), FakeUpstream("text")
    with serve_in_thread(vlm) as vlm_url, serve_in_thread(text) as text_url, \
            serve_in_thread(image_app(JPEG)) as image_url:
        cfg = GatewayConfig.model_validate({
            "experts": [
                {"name": "vlm", "backend": "openai", "model": "x", "urls": [f"{vlm_url}/v1"],
                 "capabilities": ["text", "vision"], "quality_prior": 0.5},
                {"name": "text", "backend": "openai", "model": "x", "urls": [f"{text_url}/v1"],
                 "quality_prior": 0.9},
            ],
            "routing": {"default_router": "prior", "routers": [
                {"name": "prior", "kind": "prior",
                 "options": {"priors": {"vlm": 0.5, "text": 0.9}}}]},
            "cache": {"enabled": False},
            "images": {"max_images": 2, "remote": {
                "enabled": True, "allow_hosts": ["127.0.0.1"], "allow_http": True,
                "allow_private_networks": True}},
        })
        with serve_in_thread(create_app(cfg)) as url:
            yield {"url": url, "vlm": vlm, "text": text, "image": f"{image_url}/cat.jpg"}


def post(served: dict[str, Any], messages: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{served['url']}/v1/chat/completions", timeout=30,
                      json={"model": "auto", "messages": messages, "max_tokens": 3})


def test_fake_upstream_over_http_gets_data_and_remote_images_intact(
    served: dict[str, Any],
) -> None:
    url = data_url(JPEG)
    r = post(served, image_message(url, served["image"]))
    assert r.status_code == 200, r.text
    assert r.headers["x-coe-expert"] == "vlm"
    got = served["vlm"].requests[-1]
    assert received_urls(got) == [url, served["image"]]  # the remote URL passes through
    assert sha_of_data_url(received_urls(got)[0]) == hashlib.sha256(JPEG).hexdigest()
    fetched = httpx.get(received_urls(got)[1]).content  # what the upstream would fetch
    assert hashlib.sha256(fetched).hexdigest() == hashlib.sha256(JPEG).hexdigest()
    assert not any(received_urls(b) for b in served["text"].requests)


def test_fake_upstream_over_http_refused_image_is_an_openai_error(
    served: dict[str, Any],
) -> None:
    before = len(served["vlm"].requests)
    r = post(served, image_message(data_url(JPEG), data_url(JPEG), data_url(JPEG)))
    assert r.status_code == 400
    error = json.loads(r.text)["error"]
    assert error["code"] == "too_many_images" and error["type"] == "invalid_request_error"
    assert error["param"] == "messages[0].content[3].image_url.url"
    r = post(served, image_message("http://10.0.0.1/x.jpg"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "image_host_not_allowed"
    assert len(served["vlm"].requests) == before
