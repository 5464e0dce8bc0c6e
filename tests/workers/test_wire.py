"""The lean HTTP/1.1 client against small scripted servers on loopback: keep-alive reuse,
chunked bodies piece by piece, a stale idle connection retried once, a connection lost
mid-answer, refused connections and timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from coe_gateway.workers.backends.wire import Origin, Pool, WireError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


async def serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


@pytest.fixture
async def counting() -> AsyncIterator[tuple[int, list[int]]]:
    connections: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                req = await read_request(reader)
                writer.write(ok(req.split(b"\r\n\r\n", 1)[1] or b"empty"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server, port = await serve(handler)
    yield port, connections
    server.close()


async def test_keep_alive_connections_are_reused(counting: tuple[int, list[int]]) -> None:
    port, connections = counting
    pool = Pool(Origin.parse(f"http://127.0.0.1:{port}/v1"))
    for i in range(5):
        req = pool.request_bytes("POST", "/v1/x", b"", b"body%d" % i)
        response = await pool.request(req, timeout_s=2)
        assert response.status == 200 and await response.read() == b"body%d" % i
    assert len(connections) == 1
    await pool.close()


async def test_chunked_body_arrives_piece_by_piece() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()

    server, port = await serve(handler)
    pool = Pool(Origin.parse(f"http://127.0.0.1:{port}"))
    response = await pool.request(pool.request_bytes("GET", "/", b"", b""), timeout_s=2)
    pieces = response.pieces()
    assert await anext(pieces) == b"first"  # before the server sent the rest
    release.set()
    assert [p async for p in pieces] == [b"second"]
    await pool.close()
    server.close()


async def test_a_stale_idle_connection_is_retried_once_on_a_new_one() -> None:
    seen: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        await read_request(reader)
        writer.write(ok(b"hi"))
        await writer.drain()
        await read_request(reader)  # the server gave up on the idle connection: it reads the
        writer.close()  # next request and closes without a byte of answer

    server, port = await serve(handler)
    pool = Pool(Origin.parse(f"http://127.0.0.1:{port}"))
    req = pool.request_bytes("POST", "/", b"", b"x")
    assert await (await pool.request(req, timeout_s=2)).read() == b"hi"
    assert await (await pool.request(req, timeout_s=2)).read() == b"hi"  # on a new one
    assert len(seen) == 2
    await pool.close()
    server.close()


async def test_connection_lost_mid_answer_is_an_error_that_received_bytes() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    server, port = await serve(handler)
    pool = Pool(Origin.parse(f"http://127.0.0.1:{port}"))
    response = await pool.request(pool.request_bytes("GET", "/", b"", b""), timeout_s=2)
    with pytest.raises(WireError) as info:
        await response.read()
    assert info.value.kind == "closed" and info.value.received
    await pool.close()
    server.close()


async def test_refused_and_timeouts() -> None:
    server, port = await serve(lambda r, w: asyncio.sleep(10))
    server.close()
    await server.wait_closed()
    pool = Pool(Origin.parse(f"http://127.0.0.1:{port}"))
    with pytest.raises(WireError) as info:
        await pool.request(pool.request_bytes("GET", "/", b"", b""), timeout_s=1)
    assert info.value.kind == "connect"

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server, port = await serve(silent)
    pool = Pool(Origin.parse(f"http://127.0.0.1:{port}"))
    with pytest.raises(WireError) as info:
        await pool.request(pool.request_bytes("GET", "/", b"", b""), timeout_s=0.2)
    assert info.value.kind == "timeout" and not info.value.received
    await pool.close()
    server.close()


def test_origins() -> None:
    o = Origin.parse("https://api.example.com/v1/")
    assert (o.scheme, o.host, o.port, o.prefix, o.host_header) == (
        "https", "api.example.com", 443, "/v1", "api.example.com")
    with pytest.raises(ValueError):
        Origin.parse("ftp://x")
