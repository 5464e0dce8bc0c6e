"""Remote image fetching: the address policy (unit tests of the checker), the allow-list,
schemes, one DNS lookup per hop (connections go to the checked address), redirects, caps,
Content-Type and timeouts, against a local aiohttp server. That server is on 127.0.0.1,
itself a loopback address, so the happy paths use ``allow_private_networks`` (the test-only
override) and one test shows 127.0.0.1 refused without it."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from PIL import Image
from yarl import URL

from coe_gateway.config import ImagesConfig
from coe_gateway.errors import InvalidImageError
from coe_gateway.vision.fetch import PinnedResolver, RemoteFetcher, address_refusal, host_allowed

P = "messages[0].content[1].image_url.url"


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


PNG = png()


@pytest.mark.parametrize(("ip", "why"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("10.1.2.3", "private"),
    ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("169.254.169.254", "link-local"),
    ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"), ("240.0.0.1", "reserved"),
    ("100.64.0.1", "not globally routable"), ("::1", "loopback"), ("::", "unspecified"),
    ("fe80::1", "link-local"), ("fc00::1", "private"), ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"), ("2002:7f00:1::", "loopback"),
    ("64:ff9b::a00:1", "private"),
])
def test_non_public_addresses_are_refused(ip: str, why: str) -> None:
    reason = address_refusal(ipaddress.ip_address(ip))
    assert reason is not None and reason.startswith(why)


@pytest.mark.parametrize("ip", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111",
                                "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_public_addresses_pass(ip: str) -> None:
    assert address_refusal(ipaddress.ip_address(ip)) is None


@pytest.mark.parametrize(("host", "ok"), [
    ("img.example.com", True), ("IMG.example.com.", True), ("a.cdn.example.com", True),
    ("x.y.cdn.example.com", True), ("cdn.example.com", False), ("evilcdn.example.com", False),
    ("img.example.com.evil.org", False), ("example.com", False), ("127.0.0.1", True),
])
def test_allow_list_exact_and_subdomain_patterns(host: str, ok: bool) -> None:
    assert host_allowed(host, ["img.example.com", "*.cdn.example.com", "127.0.0.1"]) is ok


def settings(**remote: Any) -> ImagesConfig:
    return ImagesConfig.model_validate({"max_image_bytes": 4096, "remote": {
        "enabled": True, "allow_hosts": ["127.0.0.1", "images.test"], "allow_http": True,
        "allow_private_networks": True, **remote}})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """A local image server: /img.png, /html, /big (chunked), /big-length, /404, /slow,
    /redirect (to /img.png), /redirect-out (to a host not allowed), /loop."""

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        for _ in range(10):
            await resp.write(b"x" * 1000)
        return resp

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.6)  # past the timeouts of the tests (0.2 s, 0.3 s)
        return web.Response(body=PNG, content_type="image/png")

    def redirect(to: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            raise web.HTTPFound(to)
        return handler

    app = web.Application()
    app.router.add_get("/img.png", lambda r: _ok(web.Response(body=PNG, content_type="image/png")))
    app.router.add_get("/html", lambda r: _ok(web.Response(text="<html/>",
                                                           content_type="text/html")))
    app.router.add_get("/big", big)
    app.router.add_get("/big-length", lambda r: _ok(web.Response(body=b"x" * 5000,
                                                                 content_type="image/png")))
    app.router.add_get("/404", lambda r: _ok(web.Response(status=404)))
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect", redirect("/img.png"))
    app.router.add_get("/redirect-out", redirect("http://elsewhere.test/img.png"))
    app.router.add_get("/loop", redirect("/loop"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _ok(resp: web.Response) -> web.Response:
    return resp


async def fails(fetcher: RemoteFetcher, url: str) -> tuple[str | None, str]:
    with pytest.raises(InvalidImageError) as exc:
        await fetcher.fetch(url, P)
    assert exc.value.param == P and exc.value.status_code == 400
    return exc.value.code, exc.value.message


async def test_fetch_returns_the_exact_bytes(server: str) -> None:
    assert await RemoteFetcher(settings()).fetch(f"{server}/img.png", P) == PNG


async def test_loopback_is_refused_without_the_test_override(server: str) -> None:
    code, msg = await fails(RemoteFetcher(settings(allow_private_networks=False)),
                            f"{server}/img.png")
    assert code == "image_host_not_allowed" and "127.0.0.1, a loopback address" in msg


async def test_one_lookup_and_the_connection_goes_to_the_checked_address(server: str) -> None:
    port = URL(server).port
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[tuple[int, str]]:
        lookups.append(host)  # images.test exists nowhere else: only this answer can work
        return [(socket.AF_INET, "127.0.0.1")]

    fetcher = RemoteFetcher(settings(), resolve)
    assert await fetcher.fetch(f"http://images.test:{port}/img.png", P) == PNG
    assert lookups == ["images.test"]
    strict = RemoteFetcher(settings(allow_private_networks=False), resolve)
    code, msg = await fails(strict, f"http://images.test:{port}/img.png")
    assert code == "image_host_not_allowed" and "resolves to 127.0.0.1" in msg


async def test_a_name_with_any_private_address_is_refused() -> None:
    async def resolve(host: str, port: int) -> list[tuple[int, str]]:
        return [(socket.AF_INET, "8.8.8.8"), (socket.AF_INET6, "::ffff:192.168.0.7")]

    fetcher = RemoteFetcher(settings(allow_private_networks=False), resolve)
    code, msg = await fails(fetcher, "http://images.test/img.png")
    assert code == "image_host_not_allowed" and "private" in msg


async def test_pinned_resolver_answers_only_the_checked_host() -> None:
    r = PinnedResolver("images.test", [(socket.AF_INET, "127.0.0.1")])
    assert [x["host"] for x in await r.resolve("images.test", 80)] == ["127.0.0.1"]
    with pytest.raises(OSError, match="not resolved and checked"):
        await r.resolve("other.test", 80)


@pytest.mark.parametrize(("url", "remote", "code", "says"), [
    ("http://127.0.0.1:1/img.png", {"allow_http": False}, "image_host_not_allowed",
     "allow_http"),
    ("https://nothere.example.com/img.png", {}, "image_host_not_allowed", "allow_hosts"),
    ("https://127.0.0.1/img.png", {"allow_hosts": []}, "image_host_not_allowed", "empty"),
    ("http://user:pw@127.0.0.1/img.png", {}, "image_host_not_allowed", "user info"),
    ("ftp://127.0.0.1/img.png", {}, "image_host_not_allowed", "scheme 'ftp'"),
])
async def test_url_policy(url: str, remote: dict[str, Any], code: str, says: str) -> None:
    got, msg = await fails(RemoteFetcher(settings(**remote)), url)
    assert got == code and says in msg


@pytest.mark.parametrize(("path", "remote", "code", "says"), [
    ("/html", {}, "image_fetch_failed", "Content-Type 'text/html'"),
    ("/404", {}, "image_fetch_failed", "HTTP 404"),
    ("/big", {}, "image_too_large", "4,096 bytes"),
    ("/big-length", {}, "image_too_large", "got at least 5,000"),
    ("/redirect", {}, "image_fetch_failed", "max_redirects"),
    ("/redirect-out", {"max_redirects": 1}, "image_host_not_allowed", "elsewhere.test"),
    ("/loop", {"max_redirects": 3}, "image_fetch_failed", "more than 3 times"),
    ("/slow", {"timeouts": {"read_s": 0.2, "total_s": 5}}, "image_fetch_failed", "timed out"),
    ("/slow", {"timeouts": {"total_s": 0.3}}, "image_fetch_failed", "timed out"),
])
async def test_fetch_failures(server: str, path: str, remote: dict[str, Any], code: str,
                              says: str) -> None:
    got, msg = await fails(RemoteFetcher(settings(**remote)), server + path)
    assert got == code and says in msg


async def test_redirect_followed_when_allowed_and_rechecked(server: str) -> None:
    assert await RemoteFetcher(settings(max_redirects=1)).fetch(f"{server}/redirect", P) == PNG


async def test_connection_refused_is_a_fetch_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _ = await fails(RemoteFetcher(settings()), f"http://127.0.0.1:{port}/img.png")
    assert code == "image_fetch_failed"
