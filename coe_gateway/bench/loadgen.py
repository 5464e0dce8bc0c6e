"""A lean HTTP/1.1 load generator for ``coe-gateway bench compare``.

Raw ``asyncio.Protocol`` connections (uvloop when installed) over persistent keep-alive
sockets, pre-built request bytes, and minimal response parsing: the status line, then a
``content-length`` or ``transfer-encoding: chunked`` body (or one that ends when the server
closes). Everything runs in callbacks, no task per request, so one core pushes several
thousand requests per second. For streams it time-stamps every SSE event (``\\n\\n``) as it
arrives.

Three load shapes:

* :func:`closed_loop`: ``concurrency`` connections, each sending its next request as soon as
  the previous answer is complete (sequential latency at 1, throughput at 16, and with
  ``stream=True`` one stream at a time);
* :func:`open_loop`: requests start on a fixed schedule whether or not earlier ones finished
  (a new connection opens when none is idle, up to ``max_connections``);
* :func:`stream_burst`: ``n`` streaming requests sent at the same instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

from coe_gateway.bench.http1 import body_framing, chunk_size

RequestSource = Callable[[], bytes]
"""Returns the bytes of the next request (one fixed request, or a fresh one each call)."""

_HEAD, _BODY_LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _BODY_CLOSE, _DONE = range(8)


def build_request(host: str, port: int, path: str, body: bytes,
                  headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one ``POST`` with a JSON body."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n").encode() + body


@dataclass(slots=True)
class Exchange:
    """One request and what came back. Times are ``time.perf_counter()`` seconds."""

    sent_at: float
    stream: bool = False
    keep_body: bool = False
    status: int = 0
    done_at: float = 0.0
    error: str | None = None
    events: int = 0
    first_event_at: float = 0.0
    last_event_at: float = 0.0
    max_gap: float = 0.0
    gaps: list[float] | None = None
    body: bytearray | None = None
    tail: bytes = b""

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200

    @property
    def latency(self) -> float:
        return self.done_at - self.sent_at

    @property
    def body_bytes(self) -> bytes:
        """The body (with ``keep_body``; else empty)."""
        return bytes(self.body or b"")

    @property
    def saw_done(self) -> bool:
        """The stream ended with ``data: [DONE]``."""
        return b"[DONE]" in self.tail

    def on_body(self, data: bytes, now: float) -> None:
        """Account body bytes: SSE events (by their ``\\n\\n``) for streams."""
        if self.keep_body:
            if self.body is None:
                self.body = bytearray()
            self.body += data
        if not self.stream:
            return
        joined = self.tail[-1:] + data
        count = joined.count(b"\n\n")
        self.tail = (self.tail + data)[-32:]
        if not count:
            return
        if self.gaps is None:
            self.gaps = []
        if self.events == 0:
            self.first_event_at = now
        else:
            gap = now - self.last_event_at
            self.gaps.append(gap)
            if gap > self.max_gap:
                self.max_gap = gap
        if count > 1:  # events that arrived together: no gap between them
            self.gaps.extend([0.0] * (count - 1))
        self.events += count
        self.last_event_at = now


class ResponseParser:
    """Incremental HTTP/1.1 response parser: feed bytes until it says the response is done."""

    __slots__ = ("buf", "state", "remaining", "keep_alive", "exchange")

    def __init__(self, exchange: Exchange) -> None:
        self.buf = bytearray()
        self.state = _HEAD
        self.remaining = 0
        self.keep_alive = True
        self.exchange = exchange

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def feed(self, data: bytes, now: float) -> bool:
        """Consume ``data``; True once the response is complete. ValueError when malformed."""
        if self.state == _BODY_LENGTH and not self.buf:  # the common fast path
            return self._length_body(data, now)
        self.buf += data
        while True:
            state = self.state
            if state == _HEAD:
                if not self._head():
                    return False
            elif state == _BODY_LENGTH:
                data, self.buf = bytes(self.buf), bytearray()
                return self._length_body(data, now)
            elif state == _CHUNK_SIZE:
                eol = self.buf.find(b"\r\n")
                if eol < 0:
                    return False
                size = chunk_size(self.buf[:eol])
                del self.buf[:eol + 2]
                self.remaining = size
                self.state = _CHUNK_DATA if size else _TRAILER
            elif state == _CHUNK_DATA:
                if not self.buf:
                    return False
                take = bytes(self.buf[:self.remaining])
                del self.buf[:len(take)]
                self.remaining -= len(take)
                self.exchange.on_body(take, now)
                if self.remaining == 0:
                    self.state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(self.buf) < 2:
                    return False
                del self.buf[:2]
                self.state = _CHUNK_SIZE
            elif state == _TRAILER:
                eol = self.buf.find(b"\r\n")
                if eol < 0:
                    return False
                del self.buf[:eol + 2]
                if eol == 0:
                    return self._finish(now)
            elif state == _BODY_CLOSE:
                data, self.buf = bytes(self.buf), bytearray()
                if data:
                    self.exchange.on_body(data, now)
                return False
            else:
                return True

    def _head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self.buf[:end]).split(b"\r\n")
        del self.buf[:end + 4]
        status = int(lines[0][9:12])
        if status == 100:  # "100 Continue": the real head follows
            return True
        self.exchange.status = status
        length, chunked, keep_alive = body_framing(lines[1:])
        if keep_alive is not None:
            self.keep_alive = keep_alive
        if chunked:
            self.state = _CHUNK_SIZE
        elif length >= 0 or status in (204, 304):
            self.remaining = max(length, 0)
            self.state = _BODY_LENGTH
        else:
            self.keep_alive = False
            self.state = _BODY_CLOSE
        return True

    def _length_body(self, data: bytes, now: float) -> bool:
        if len(data) > self.remaining:
            raise ValueError("more bytes than content-length (pipelining is not used)")
        self.remaining -= len(data)
        if data:
            self.exchange.on_body(data, now)
        if self.remaining == 0:
            return self._finish(now)
        return False

    def _finish(self, now: float) -> bool:
        self.state = _DONE
        self.exchange.done_at = now
        return True

    def connection_closed(self, now: float) -> bool:
        """The server closed: True when that ends a close-delimited body."""
        if self.state == _BODY_CLOSE:
            return self._finish(now)
        return False


Callback = Callable[["ClientConnection", Exchange], None]


class ClientConnection(asyncio.Protocol):
    """A keep-alive connection running one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.callback: Callback | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def busy(self) -> bool:
        return self.parser is not None

    def send(self, request: bytes, exchange: Exchange, callback: Callback) -> None:
        """Write ``request``; ``callback(self, exchange)`` runs when the answer is complete
        or the exchange failed."""
        if self.transport is None or self.closed:
            exchange.error, exchange.done_at = "closed", time.perf_counter()
            asyncio.get_running_loop().call_soon(callback, self, exchange)  # no recursion
            return
        self.parser, self.callback = ResponseParser(exchange), callback
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        parser = self.parser
        if parser is None:
            return  # bytes after a response we gave up on
        try:
            complete = parser.feed(data, now)
        except ValueError as exc:
            self._fail(f"bad response: {exc}")
            return
        if complete:
            if not parser.keep_alive:
                self.close()
            self._complete(parser.exchange)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        parser = self.parser
        if parser is not None:
            if parser.connection_closed(time.perf_counter()):
                self._complete(parser.exchange)
            else:
                self._fail("connection lost")

    def abort(self, reason: str) -> None:
        """Give up on the exchange in flight (a timeout) and drop the connection."""
        if self.parser is not None:
            self._fail(reason)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    def _fail(self, reason: str) -> None:
        assert self.parser is not None
        exchange = self.parser.exchange
        exchange.error = exchange.error or reason
        exchange.done_at = time.perf_counter()
        self.close()
        self._complete(exchange)

    def _complete(self, exchange: Exchange) -> None:
        callback = self.callback
        self.parser, self.callback = None, None
        if callback is not None:
            callback(self, exchange)


async def connect(host: str, port: int) -> ClientConnection:
    """One open connection."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(ClientConnection, host, port)
    return protocol


async def connect_many(host: str, port: int, n: int) -> list[ClientConnection]:
    """``n`` open connections (opened 64 at a time)."""
    out: list[ClientConnection] = []
    for start in range(0, n, 64):
        out += await asyncio.gather(*(connect(host, port) for _ in range(min(64, n - start))))
    return out


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection while load runs (a collection would stall the generator)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect()


@dataclass
class LoadResult:
    """What one load step produced."""

    exchanges: list[Exchange]
    started: float
    ended: float
    scheduled: int = 0
    lags: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return max(self.ended - self.started, 1e-9)

    @property
    def ok(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.ok]

    @property
    def errors(self) -> int:
        return sum(1 for e in self.exchanges if not e.ok)

    def error_kinds(self) -> dict[str, int]:
        """Failed exchanges by reason (``status 503``, ``timeout``, ...)."""
        out: dict[str, int] = {}
        for e in self.exchanges:
            if not e.ok:
                kind = e.error or f"status {e.status}"
                out[kind] = out.get(kind, 0) + 1
        return out


def _watch_timeouts(connections: list[ClientConnection], in_flight: dict[int, Exchange],
                    timeout_s: float) -> None:
    """Abort exchanges older than ``timeout_s`` (called periodically)."""
    now = time.perf_counter()
    for conn in list(connections):
        exchange = in_flight.get(id(conn))
        if exchange is not None and now - exchange.sent_at > timeout_s:
            conn.abort("timeout")


async def _until_finished(finished: asyncio.Future[None], connections: list[ClientConnection],
                          in_flight: dict[int, Exchange], timeout_s: float) -> None:
    """Wait for ``finished``, aborting exchanges older than ``timeout_s`` every 0.1 s."""
    while not finished.done():
        await asyncio.wait([finished], timeout=0.1)
        _watch_timeouts(connections, in_flight, timeout_s)


def _close_all(connections: list[ClientConnection], exchanges: list[Exchange],
               started: float) -> LoadResult:
    """The step ends now: close every connection and sum it up."""
    ended = time.perf_counter()
    for conn in connections:
        conn.close()
    return LoadResult(exchanges, started, ended)


async def closed_loop(host: str, port: int, source: RequestSource, concurrency: int,
                      seconds: float, timeout_s: float = 10.0, stream: bool = False,
                      max_requests: int | None = None) -> LoadResult:
    """Each of ``concurrency`` connections sends back to back for ``seconds``."""
    loop = asyncio.get_running_loop()
    connections = await connect_many(host, port, concurrency)
    exchanges: list[Exchange] = []
    in_flight: dict[int, Exchange] = {}
    finished = loop.create_future()
    active = [len(connections)]
    limit = max_requests if max_requests is not None else 1 << 62
    started = time.perf_counter()
    deadline = started + seconds

    def send(conn: ClientConnection) -> None:
        exchange = Exchange(time.perf_counter(), stream=stream)
        in_flight[id(conn)] = exchange
        conn.send(source(), exchange, on_done)

    def retire() -> None:
        active[0] -= 1
        if active[0] == 0 and not finished.done():
            finished.set_result(None)

    def on_done(conn: ClientConnection, exchange: Exchange) -> None:
        in_flight.pop(id(conn), None)
        exchanges.append(exchange)
        if exchange.done_at < deadline and len(exchanges) < limit:
            if not conn.closed:
                send(conn)
                return
            loop.create_task(_reconnect_and_send(conn))
            return
        retire()

    async def _reconnect_and_send(old: ClientConnection) -> None:
        connections.remove(old)
        try:
            conn = await connect(host, port)
        except OSError:
            retire()  # this slot stops; the others go on
            return
        connections.append(conn)
        send(conn)

    with gc_paused():
        for conn in connections:
            send(conn)
        await _until_finished(finished, connections, in_flight, timeout_s)
    return _close_all(connections, exchanges, started)


async def open_loop(host: str, port: int, source: RequestSource, rate: float, seconds: float,
                    timeout_s: float = 10.0, max_connections: int = 4096,
                    warm_connections: int = 32) -> LoadResult:
    """``rate * seconds`` requests, the i-th sent at ``start + i / rate`` on an idle
    connection (a new one when none is idle). Latency counts from the actual send; the lag
    of each send behind its schedule is kept in ``lags`` to show a generator that fell behind.
    """
    loop = asyncio.get_running_loop()
    idle = await connect_many(host, port, min(warm_connections, max_connections))
    everyone: list[ClientConnection] = list(idle)
    exchanges: list[Exchange] = []
    in_flight: dict[int, Exchange] = {}
    lags: list[float] = []
    pending_connects = [0]
    connecting: set[asyncio.Task[None]] = set()
    total = max(1, int(rate * seconds))

    def on_done(conn: ClientConnection, exchange: Exchange) -> None:
        in_flight.pop(id(conn), None)
        exchanges.append(exchange)
        if not conn.closed:
            idle.append(conn)
        elif conn in everyone:
            everyone.remove(conn)  # frees a place under max_connections

    def start_on(conn: ClientConnection) -> None:
        exchange = Exchange(time.perf_counter())
        in_flight[id(conn)] = exchange
        conn.send(source(), exchange, on_done)

    async def start_on_new(sent_at: float) -> None:
        try:
            conn = await connect(host, port)
        except OSError as exc:
            exchanges.append(Exchange(sent_at, error=f"connect: {exc.__class__.__name__}",
                                      done_at=time.perf_counter()))
            return
        finally:
            pending_connects[0] -= 1
        everyone.append(conn)
        exchange = Exchange(sent_at)  # the connect time counts: no idle connection was there
        in_flight[id(conn)] = exchange
        conn.send(source(), exchange, on_done)

    with gc_paused():
        started = time.perf_counter()
        next_check = started + 0.1
        i = 0
        while i < total:
            now = time.perf_counter()
            due = min(total, int((now - started) * rate) + 1)
            while i < due:
                lags.append(now - (started + i / rate))
                if idle:
                    start_on(idle.pop())
                elif len(everyone) + pending_connects[0] < max_connections:
                    pending_connects[0] += 1
                    task = loop.create_task(start_on_new(now))
                    connecting.add(task)
                    task.add_done_callback(connecting.discard)
                else:
                    exchanges.append(Exchange(now, error=f"over {max_connections} in flight",
                                              done_at=now))
                i += 1
            if now >= next_check:
                _watch_timeouts(everyone, in_flight, timeout_s)
                next_check = now + 0.1
            wait = started + i / rate - time.perf_counter()
            await asyncio.sleep(max(wait, 0.0))
        sent_end = time.perf_counter()
        drain_deadline = sent_end + timeout_s + 1.0
        while (in_flight or pending_connects[0]) and time.perf_counter() < drain_deadline:
            await asyncio.sleep(0.05)
            _watch_timeouts(everyone, in_flight, timeout_s)
    for task in list(connecting):
        task.cancel()
    for conn in list(everyone):
        conn.abort("unfinished")
    return LoadResult(exchanges, started, sent_end, scheduled=total, lags=lags)


async def stream_burst(host: str, port: int, source: RequestSource, n: int,
                       timeout_s: float = 60.0) -> LoadResult:
    """``n`` streaming requests on ``n`` fresh connections, all sent at the same instant."""
    loop = asyncio.get_running_loop()
    connections = await connect_many(host, port, n)
    exchanges: list[Exchange] = []
    in_flight: dict[int, Exchange] = {}
    finished = loop.create_future()

    def on_done(conn: ClientConnection, exchange: Exchange) -> None:
        in_flight.pop(id(conn), None)
        exchanges.append(exchange)
        if len(exchanges) == n and not finished.done():
            finished.set_result(None)

    requests = [source() for _ in range(n)]
    with gc_paused():
        started = time.perf_counter()
        for conn, request in zip(connections, requests, strict=True):
            exchange = Exchange(time.perf_counter(), stream=True)
            in_flight[id(conn)] = exchange
            conn.send(request, exchange, on_done)
        await _until_finished(finished, connections, in_flight, timeout_s)
    return _close_all(connections, exchanges, started)


async def request_once(host: str, port: int, request: bytes, stream: bool = False,
                       timeout_s: float = 30.0) -> Exchange:
    """One exchange on a fresh connection, keeping the body (for sanity checks)."""
    loop = asyncio.get_running_loop()
    conn = await connect(host, port)
    done: asyncio.Future[Exchange] = loop.create_future()
    exchange = Exchange(time.perf_counter(), stream=stream, keep_body=True)

    def finish(_conn: ClientConnection, result: Exchange) -> None:
        if not done.done():
            done.set_result(result)

    conn.send(request, exchange, finish)
    try:
        return await asyncio.wait_for(done, timeout_s)
    except TimeoutError:
        exchange.error = "timeout"
        return exchange
    finally:
        conn.close()
