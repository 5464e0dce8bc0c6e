"""The byte-level contract of upstream answers: raw SSE events and raw JSON bodies, each with
a cheap, lazy view of the few things the gateway needs.

A backend hands the gateway a :class:`Body` (a whole ``chat.completion`` JSON object, as the
upstream sent it) or an async iterator of :class:`Event` (one SSE event each, ``data: ...``
and its blank line, as the upstream sent it). The gateway relays them verbatim: it adds its
routing extension to the first event (or to the body) by splicing bytes, renames ``model``
when the upstream's name differs from the expert's, and otherwise parses an event only when a
byte sniff says it carries something the gateway reads (token usage, an error). A whole
stream is parsed only when the cache will store it (:func:`assemble`).

Nothing here imports the server or the backends: it is the vocabulary both speak.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (the one serializer of the hot path)."""
    return orjson.dumps(obj)


def loads(raw: bytes | str) -> Any:
    return orjson.loads(raw)


def has_value(data: bytes, key: bytes) -> bool:
    """Whether the JSON text ``data`` has the (quoted) ``key`` with a value other than
    ``null`` somewhere; a byte scan, no parse. ``key`` includes its quotes: ``b'"usage"'``."""
    at = data.find(key)
    while at >= 0:
        i = at + len(key)
        n = len(data)
        while i < n and data[i] in b" \t\r\n":
            i += 1
        if i < n and data[i] == 58:  # ':'
            i += 1
            while i < n and data[i] in b" \t\r\n":
                i += 1
            if not data.startswith(b"null", i):
                return True
        at = data.find(key, at + 1)
    return False


@dataclass(slots=True)
class Usage:
    """Token counts of one attempt (``reported`` is false until the upstream said them)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reported: bool = False

    def take(self, usage: Any) -> None:
        """Take the counts of an OpenAI ``usage`` object (the last one reported wins)."""
        if isinstance(usage, dict) and usage:
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)
            self.reported = True


@dataclass(slots=True)
class Event:
    """One SSE event exactly as received: ``raw`` ends with the blank line (``\\n\\n``).

    ``data`` is the payload of its ``data:`` line(s) (empty for comments and other fields);
    :meth:`json` parses it on first use only.
    """

    raw: bytes
    data: bytes
    _parsed: Any = field(default=None, repr=False)

    @classmethod
    def of(cls, obj: Any) -> Event:
        """An event carrying ``obj`` as its data (replayed and synthesized events)."""
        data = dumps(obj)
        return cls(b"data: " + data + b"\n\n", data, obj)

    @property
    def is_done(self) -> bool:
        return self.data == b"[DONE]"

    def json(self) -> Any:
        if self._parsed is None:
            self._parsed = loads(self.data)
        return self._parsed

    @property
    def has_usage(self) -> bool:
        return has_value(self.data, b'"usage"')

    @property
    def has_error(self) -> bool:
        """An ``{"error": ...}`` event (what OpenAI-compatible servers send when a stream
        breaks), sniffed first so that ordinary chunks are never parsed for it."""
        if b'"error"' not in self.data:
            return False
        obj = self.json()
        return isinstance(obj, dict) and "error" in obj and not obj.get("choices")

    def usage_only(self) -> bool:
        """A chunk with usage and no choices (what ``include_usage`` adds at the end)."""
        obj = self.json()
        return isinstance(obj, dict) and not obj.get("choices") and bool(obj.get("usage"))


def split_events(buffer: bytearray) -> list[Event]:
    """Take every complete event off the front of ``buffer`` (bytes received so far; the
    incomplete rest stays). Accepts ``\\n\\n`` and ``\\r\\n\\r\\n`` separators."""
    out: list[Event] = []
    while True:
        end = buffer.find(b"\n\n")
        sep = 2
        crlf = buffer.find(b"\r\n\r\n")
        if crlf >= 0 and (end < 0 or crlf < end):
            end, sep = crlf, 4
        if end < 0:
            return out
        block = bytes(buffer[: end + sep])
        del buffer[: end + sep]
        out.append(Event(block if sep == 2 else block.replace(b"\r\n", b"\n"),
                         _data_of(block[:end])))


def _data_of(block: bytes) -> bytes:
    """The ``data`` field of one event block (several ``data:`` lines join with ``\\n``)."""
    if block.startswith(b"data: ") and b"\n" not in block:  # the common case
        return block[6:].rstrip(b"\r")
    parts = []
    for line in block.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts)


@dataclass(slots=True)
class Body:
    """A whole (non-streamed) upstream answer as bytes; :meth:`json` parses it once."""

    raw: bytes
    _parsed: Any = field(default=None, repr=False)

    def json(self) -> Any:
        if self._parsed is None:
            self._parsed = loads(self.raw)
        return self._parsed


def splice_front(obj_bytes: bytes, key: bytes, value: bytes) -> bytes:
    """``{"key":value,`` + the rest of the JSON object ``obj_bytes`` (which starts with
    ``{``): the field is added without parsing the object."""
    start = obj_bytes.find(b"{")
    rest = obj_bytes[start + 1:]
    sep = b"" if rest.lstrip().startswith(b"}") else b","
    return obj_bytes[: start + 1] + b'"' + key + b'":' + value + sep + rest


class Renamer:
    """Replaces the upstream's ``"model":"<name>"`` with the expert's name, by bytes (both
    spacings); a no-op when the names are equal."""

    __slots__ = ("_pairs",)

    def __init__(self, upstream: str, expert: str) -> None:
        if upstream == expert:
            self._pairs: tuple[tuple[bytes, bytes], ...] = ()
            return
        new = b'"model":' + dumps(expert)
        self._pairs = tuple((b'"model":' + sep + dumps(upstream), new) for sep in (b"", b" "))

    @property
    def noop(self) -> bool:
        return not self._pairs

    def __call__(self, data: bytes) -> bytes:
        for old, new in self._pairs:
            if old in data:
                data = data.replace(old, new, 1)
        return data


def chunks_of(events: list[Event]) -> list[dict[str, Any]]:
    """The chunk objects of a relayed stream (parsed here: only when the cache stores it)."""
    return [obj for ev in events if ev.data and not ev.is_done
            for obj in (ev.json(),) if isinstance(obj, dict)]
