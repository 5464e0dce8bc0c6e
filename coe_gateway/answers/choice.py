"""``choice``: the letter of a multiple-choice answer (A-J by default).

Read in order of confidence, each stage tried only when the previous one found nothing:

1. an explicit statement, the last one in the reply: "the answer is (C)", "Answer: c) ...",
   "final answer: **B**", "\\boxed{D}", "the correct option is E", "B is correct";
2. a lone letter opening the reply: "C", "(B) 42", "D. Paris", "C\\n\\nBecause ...";
3. the last standalone capital letter in parentheses: "... so we pick (B) here".

Markdown emphasis (``*``, backticks) is ignored. A lower-case letter counts only when it is
delimited like a label ("c)", "(c)", "c.", "c:" or the whole reply), so "the answer is a
tricky one" reads nothing; the word "A" (or "I") opening a sentence ("A cat is ...", "I think")
is never taken unless it is the whole reply or followed by ")", "." or ":".
"""

from __future__ import annotations

import re
from typing import Any

from coe_gateway.answers.base import Extractor, register_extractor

_MARKUP = re.compile(r"[*`]")
_FILLER = r"(?:(?:probably|likely|clearly|definitely|therefore|thus|so|then|option|choice|" \
          r"letter|answer|the)\s+){0,3}"
_WORDS = frozenset("AI")  # capital letters that are also English words


def _letter(letters: str) -> str:
    """A letter, optionally in parentheses or brackets (groups ``open``, ``l``)."""
    cls = re.escape(letters + letters.lower())
    return rf"(?P<open>[(\[])?\s*(?P<l>[{cls}])(?![A-Za-z0-9'])"


@register_extractor("choice")
class ChoiceExtractor(Extractor):
    """Multiple-choice letters; ``letters`` are the options' labels (upper case)."""

    def __init__(self, letters: str = "ABCDEFGHIJ") -> None:
        if not isinstance(letters, str) or not letters.isalpha() or not letters.isupper():
            raise ValueError(f"letters must be upper-case letters, got {letters!r}")
        self.letters = letters
        letter = _letter(letters)
        self._explicit = [
            re.compile(rf"\banswer\b\s*(?:is|:|=|-|—|–|would\s+be|should\s+be)?\s*[:\-]?\s*"
                       rf"{_FILLER}{letter}", re.IGNORECASE),
            re.compile(rf"\\boxed\{{\s*(?:\\text\{{)?{letter}", re.IGNORECASE),
            re.compile(rf"\bcorrect\s+(?:option|choice|letter)\s*(?:is|:)?\s*{letter}",
                       re.IGNORECASE),
            re.compile(rf"(?<![A-Za-z]){letter}\)?\s+is\s+(?:the\s+)?(?:correct|right|best)\b",
                       re.IGNORECASE),
        ]
        self._start = re.compile(rf"\A\s*{letter}")
        self._paren = re.compile(rf"\((?P<l>[{re.escape(letters)}])\)")

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "letters": self.letters}

    def extract(self, text: str) -> str | None:
        text = _MARKUP.sub("", text)
        return self._explicit_letter(text) or self._opening_letter(text) \
            or self._last_parenthesised(text)

    def _explicit_letter(self, text: str) -> str | None:
        best: tuple[int, str] | None = None
        for pattern in self._explicit:
            for m in pattern.finditer(text):
                if _labelled(m, text, strict_case=True) and (best is None or m.start() > best[0]):
                    best = (m.start(), m["l"].upper())
        return best[1] if best else None

    def _opening_letter(self, text: str) -> str | None:
        m = self._start.match(text)
        if m is None or not _labelled(m, text, strict_case=False):
            return None
        return m["l"].upper()

    def _last_parenthesised(self, text: str) -> str | None:
        found = self._paren.findall(text)
        return found[-1] if found else None


def _labelled(m: re.Match[str], text: str, *, strict_case: bool) -> bool:
    """Whether the matched letter reads as an option label rather than a word.

    A letter in parentheses, or followed by ")", "." or ":", or ending the reply always is.
    Otherwise a capital letter is, after an explicit phrase (``strict_case``) unless it is
    "I"; at the start of a reply, only on a line of its own, before "," / "-", or when it is
    not "A" / "I"."""
    rest = text[m.end():]
    nxt = rest.lstrip(" \t")
    if m["open"] or not rest.strip() or nxt[:1] in (")", "]", ".", ":"):
        return True
    if m["l"].islower():
        return False
    if strict_case:
        return m["l"] != "I"  # "the answer I think is ..." (the option I needs "I." / "(I)")
    if nxt[:1] in ("\n", "\r", ",", "-", "—", "–"):
        return True
    return m["l"] not in _WORDS
