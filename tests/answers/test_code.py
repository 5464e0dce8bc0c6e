"""``code``: the last fenced block, whitespace-normalised."""

from __future__ import annotations

import pytest

from coe_gateway.answers import build_extractor

CODE = build_extractor("code")

ADD = "def add(a, b):\n    return a + b"


@pytest.mark.parametrize("text, key", [
    (f"Here is the function:\n```python\n{ADD}\n```\nIt adds.", ADD),
    (f"```\n{ADD}\n```", ADD),
    (f"```py\n\n\ndef add(a, b):   \n    return a + b\t\n\n```", ADD),
    (f"~~~python\n{ADD}\n~~~", ADD),
    (f"First try:\n```python\ndef add(a, b):\n    return a - b\n```\nFixed:\n```python\n{ADD}\n```",
     ADD),
    ("```js\nconsole.log(1)\n```\nor in Python\n```python\nprint(1)\n```", "print(1)"),
    ("  ```python\n    x = 1\n  ```", "    x = 1"),  # leading indentation is kept
])
def test_reads_the_last_block(text: str, key: str) -> None:
    assert CODE.extract(text) == key


@pytest.mark.parametrize("text", [
    "",
    "def add(a, b): return a + b",  # no fence
    "```python\ndef add(a, b):\n    return a + b",  # never closed
    "```python\n\n   \n```",  # empty
    "Use `add(a, b)` inline.",
])
def test_unparseable_is_none(text: str) -> None:
    assert CODE.extract(text) is None


def test_language_tag_and_trailing_spaces_do_not_matter() -> None:
    a = CODE.extract(f"```python\n{ADD}\n```")
    b = CODE.extract("Sure!\n```py\ndef add(a, b):  \n    return a + b\n\n```\n")
    assert a == b == ADD


def test_different_code_disagrees() -> None:
    a = CODE.extract(f"```python\n{ADD}\n```")
    b = CODE.extract("```python\ndef add(x, y):\n    return x + y\n```")
    assert a != b
