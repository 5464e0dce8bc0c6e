"""``code``: the last fenced code block of a reply, whitespace-normalised.

A block is fenced by ```` ``` ```` or ``~~~`` (an info string such as ``python`` may follow
the opening fence and is ignored, so ```` ```py ```` and ```` ```python ```` blocks with the
same code agree). The key is the block's code with trailing spaces stripped from every line
and blank lines dropped at both ends; a reply without a closed block, or whose last block is
empty, has no key. Two answers agree only when their code is the same text: a cascade on code
accepts answers that are literally identical, not equivalent programs.
"""

from __future__ import annotations

import re

from coe_gateway.answers.base import Extractor, register_extractor

FENCE = re.compile(r"^[ \t]*(?P<fence>```|~~~)[^\n]*\n(?P<code>.*?)^[ \t]*(?P=fence)[ \t]*$",
                   re.DOTALL | re.MULTILINE)


def normalise_code(code: str) -> str:
    """Trailing spaces off every line, blank lines off both ends."""
    lines = [line.rstrip() for line in code.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def last_block(text: str) -> str | None:
    """The code of the last closed fenced block, or None."""
    blocks = [m["code"] for m in FENCE.finditer(text)]
    return blocks[-1] if blocks else None


@register_extractor("code")
class CodeExtractor(Extractor):
    """The last fenced code block (see the module)."""

    def extract(self, text: str) -> str | None:
        block = last_block(text)
        if block is None:
            return None
        return normalise_code(block) or None
