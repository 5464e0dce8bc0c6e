"""The bits of HTTP/1.1 message framing that both sides of ``coe-gateway bench compare``
read: the load generator (responses, :mod:`coe_gateway.bench.loadgen`) and the fast fake
upstream (requests, :mod:`coe_gateway.bench.fast_upstream`)."""

from __future__ import annotations

from collections.abc import Iterable


def body_framing(header_lines: Iterable[bytes]) -> tuple[int, bool, bool | None]:
    """How the body of a message with these header lines (the start line excluded) is
    framed: ``(content-length or -1, chunked, keep-alive)``, where keep-alive is None when
    there is no ``connection`` header (the protocol version decides)."""
    length, chunked, keep_alive = -1, False, None
    for line in header_lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep_alive = b"close" not in value.lower()
    return length, chunked, keep_alive


def chunk_size(line: bytes | bytearray) -> int:
    """The size in a chunk-size line of a chunked body (without its CRLF; extensions
    ignored). ValueError when it is not hexadecimal."""
    return int(bytes(line).split(b";")[0], 16)
