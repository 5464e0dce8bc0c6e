"""``exact``: the whole reply, lightly normalised (short free-form answers: a word, a name).

The reply is stripped; surrounding quotes / emphasis (``"``, ``'``, curly quotes, backticks,
``*``) and trailing punctuation (``. ! ? , ; :``) are removed, repeatedly, so ``"Paris".``
and ``**Paris**`` read ``paris``; internal whitespace is collapsed to single spaces; and the
text is case-folded unless ``case_sensitive``. An empty result has no key.
"""

from __future__ import annotations

from typing import Any

from coe_gateway.answers.base import Extractor, register_extractor

QUOTES = "\"'`*“”‘’«»"
TRAILING = ".!?,;:…"


def strip_decorations(text: str) -> str:
    """Whitespace, surrounding quotes and trailing punctuation off, until none is left."""
    while True:
        stripped = text.strip().rstrip(TRAILING).strip().strip(QUOTES)
        if stripped == text:
            return text
        text = stripped


@register_extractor("exact")
class ExactExtractor(Extractor):
    """The normalised reply (see the module)."""

    def __init__(self, case_sensitive: bool = False) -> None:
        if not isinstance(case_sensitive, bool):
            raise ValueError(f"case_sensitive must be a boolean, got {case_sensitive!r}")
        self.case_sensitive = case_sensitive

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "case_sensitive": self.case_sensitive}

    def extract(self, text: str) -> str | None:
        key = " ".join(strip_decorations(text).split())
        if not self.case_sensitive:
            key = key.casefold()
        return key or None
