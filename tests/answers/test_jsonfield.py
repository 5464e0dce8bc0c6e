"""``json``: a JSON reply or one field of it, as canonical JSON."""

from __future__ import annotations

import pytest

from coe_gateway.answers import build_extractor

WHOLE = build_extractor("json")
ANSWER = build_extractor("json", {"field": "answer"})
NESTED = build_extractor("json", {"field": "result.value"})


@pytest.mark.parametrize("text, key", [
    ('{"b": 1, "a": 2}', '{"a":2,"b":1}'),
    ('  {"a": [1.0, 2], "b": {"y": 1, "x": 2}}  ', '{"a":[1,2],"b":{"x":2,"y":1}}'),
    ('[3, 1, 2]', "[3,1,2]"),
    ('"Paris"', '"Paris"'),
    ("42", "42"),
    ('Sure:\n```json\n{"answer": "yes"}\n```\nHope this helps.', '{"answer":"yes"}'),
    ('```\n{"answer": "yes"}\n```', '{"answer":"yes"}'),
    ('```python\nx = {1: 2}\n```\n```json\n{"ok": true}\n```', '{"ok":true}'),
    ('The result is {"answer": "é"} as requested.', '{"answer":"é"}'),
    ('Not this {broken, but {"a": null}', '{"a":null}'),
])
def test_whole_value(text: str, key: str) -> None:
    assert WHOLE.extract(text) == key


@pytest.mark.parametrize("text, key", [
    ('{"answer": 42, "reasoning": "6 * 7"}', "42"),
    ('{"answer": 42.0}', "42"),
    ('{"answer": 0.5}', "0.5"),
    ('{"answer": "B"}', '"B"'),
    ('{"answer": {"z": 1, "a": [true, null]}}', '{"a":[true,null],"z":1}'),
    ('```json\n{"reasoning": "...", "answer": [1, 2]}\n```', "[1,2]"),
    ('{"answer": null}', "null"),
])
def test_field(text: str, key: str) -> None:
    assert ANSWER.extract(text) == key


def test_dotted_path_and_list_index() -> None:
    assert NESTED.extract('{"result": {"value": 2.0, "unit": "m"}}') == "2"
    assert NESTED.extract('{"result": 1}') is None
    items = build_extractor("json", {"field": "items.1.name"})
    assert items.extract('{"items": [{"name": "a"}, {"name": "b"}]}') == '"b"'
    assert items.extract('{"items": [{"name": "a"}]}') is None


@pytest.mark.parametrize("text", [
    "",
    "The answer is 42.",
    "{not json}",
    '```json\n{"answer": \n```',
    '{"reasoning": "no answer field"}',
    "[1, 2, 3]",  # a list has no field "answer"
])
def test_unparseable_is_none(text: str) -> None:
    assert ANSWER.extract(text) is None


def test_key_order_and_spacing_do_not_matter() -> None:
    a = WHOLE.extract('{"answer": 1, "why": "x"}')
    b = WHOLE.extract('Here:\n```json\n{\n  "why": "x",\n  "answer": 1.0\n}\n```')
    assert a == b is not None
