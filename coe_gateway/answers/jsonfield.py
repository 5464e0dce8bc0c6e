"""``json``: a JSON reply, or one field of it, as canonical JSON.

The JSON is the whole reply if it parses; else the first ```` ```json ```` block (or, failing
that, the first fenced block) that parses; else the first ``{...}`` object found in the text.
``field`` is a dotted path into it (``answer``, ``result.value``, ``items.0``: a number
indexes a list); without one the whole value is the answer. The key is
``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, with
integral floats written as integers (``1.0`` and ``1`` agree). No JSON, or no such field:
no key.
"""

from __future__ import annotations

import json
import re
from typing import Any

from coe_gateway.answers.base import Extractor, register_extractor

BLOCK = re.compile(r"```[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)```", re.DOTALL)
_MISSING = object()
_DECODER = json.JSONDecoder()


def _loads(text: str) -> Any:
    """The JSON value of ``text``, or :data:`_MISSING`."""
    try:
        return json.loads(text)
    except ValueError:
        return _MISSING


def _first_object(text: str) -> Any:
    """The first ``{...}`` in ``text`` that decodes as JSON, or :data:`_MISSING`."""
    start = text.find("{")
    while start != -1:
        try:
            return _DECODER.raw_decode(text, start)[0]
        except ValueError:
            start = text.find("{", start + 1)
    return _MISSING


def find_json(text: str) -> Any:
    """The reply's JSON value (see the module), or :data:`_MISSING`."""
    value = _loads(text)
    if value is not _MISSING:
        return value
    blocks = list(BLOCK.finditer(text))
    for block in sorted(blocks, key=lambda b: b["lang"].lower() != "json"):
        value = _loads(block["body"])
        if value is not _MISSING:
            return value
    return _first_object(text)


def get_path(value: Any, path: tuple[str, ...]) -> Any:
    """``value[p0][p1]...`` (a digit indexes a list), or :data:`_MISSING`."""
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _integral(value: Any) -> Any:
    """``value`` with every integral float as an int (recursively)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, integral floats as ints."""
    return json.dumps(_integral(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


@register_extractor("json")
class JsonExtractor(Extractor):
    """A JSON reply or one of its fields (see the module)."""

    def __init__(self, field: str | None = None) -> None:
        if field is not None and (not isinstance(field, str) or not all(field.split("."))):
            raise ValueError(f"field must be a dotted path like 'result.value', got {field!r}")
        self.field = field
        self._path = tuple(field.split(".")) if field else ()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "field": self.field}

    def extract(self, text: str) -> str | None:
        value = get_path(find_json(text.strip()), self._path)
        return None if value is _MISSING else canonical_json(value)
