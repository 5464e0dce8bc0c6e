"""Guess which extractor suits a request from its text (when nothing names one).

In order, the first that matches wins:

1. ``response_format`` of type ``json_object`` / ``json_schema`` -> ``json``;
2. options listed as ``A) ...`` / ``(A) ...`` / ``A. ...`` / ``A: ...`` at the start of two
   lines in a row with consecutive letters (``(A) ... (B) ...`` and ``A) ... B) ...`` also
   on one line), or an instruction such as "answer with the letter" /
   "multiple choice" -> ``choice``;
3. a request for code: a fenced block, "write / implement ... function / program / script
   / class / code", "in / using Python" (or another common language), or the prompt opens
   with code (``def``, ``class``, ``import``, ``#include``) -> ``code``;
4. a math word problem: "how many / how much", "calculate", "compute", "solve", "what
   percent", "####", or digits joined by an operator (``12 * 7``, ``3/4``, ``9 - 4``; a
   hyphen only between spaces, so "2-year-old" and dates do not count) -> ``number``;
5. otherwise free text -> ``embedding``.

Choice beats code and number (an MMLU math question with options is answered by a letter);
code beats number (a coding task often carries numbers).
"""

from __future__ import annotations

import re
from typing import Any

_OPTION_LINE = re.compile(r"^[ \t]*(?:\((?P<p>[A-J])\)|(?P<l>[A-J])[).:])[ \t]+\S",
                          re.MULTILINE)
_INLINE_OPTIONS = re.compile(r"(?:\(A\)|(?<![\w(])A\))\s*\S.*?\s(?:\(B\)|(?<![\w(])B\))\s*\S",
                             re.DOTALL)
_CHOICE_WORDS = re.compile(
    r"\b(?:answer|respond|reply)\s+with\s+(?:only\s+)?(?:the|a|one)\s+(?:single\s+)?"
    r"(?:letter|option)|\bmultiple[- ]choice\b|\b(?:choose|select|pick)\s+(?:the\s+)?"
    r"(?:correct|best|right)\s+(?:option|answer|letter|choice)\b", re.IGNORECASE)
_LANGUAGES = r"(?:python|javascript|typescript|java|c\+\+|c#|rust|go|golang|ruby|php|" \
             r"kotlin|swift|scala|haskell|sql|bash|shell|perl|lua|julia)"
_CODE_WORDS = re.compile(
    r"```|\b(?:write|implement|create|complete|fix|debug|refactor|define)\b[^.?!\n]{0,80}?"
    r"\b(?:function|program|script|class|method|code|snippet|module|query|regex|algorithm)s?\b"
    rf"|\b(?:in|using|with)\s+{_LANGUAGES}(?![\w+#])|\b{_LANGUAGES}\s+(?:function|code|script|"
    r"program|class|snippet)\b", re.IGNORECASE)
_CODE_START = re.compile(r"\A\s*(?:def\s+\w+\s*\(|class\s+\w+|import\s+\w+|from\s+[\w.]+\s+"
                         r"import\b|#include\b|function\s+\w+\s*\()")
_MATH_WORDS = re.compile(
    r"\bhow\s+(?:many|much)\b|\bcalculate\b|\bcompute\b|\bsolve\b|\bwhat\s+percent(?:age)?\b"
    r"|####|\d\s*[+*/×÷^]\s*\(?\d|\d\s+-\s+\d", re.IGNORECASE)
_JSON_FORMATS = ("json_object", "json_schema")


def _format_type(response_format: Any) -> str | None:
    """The ``type`` of a response_format given as a mapping, an object or a string."""
    if isinstance(response_format, str):
        return response_format
    if isinstance(response_format, dict):
        value = response_format.get("type")
    else:
        value = getattr(response_format, "type", None)
    return value if isinstance(value, str) else None


def lists_options(text: str) -> bool:
    """Whether ``text`` lists lettered options: two option lines in a row with consecutive
    letters (A then B, or B then C when A shares the question's line), or inline
    ``(A) ... (B)`` / ``A) ... B)``."""
    letters = [m["p"] or m["l"] for m in _OPTION_LINE.finditer(text)]
    if any(ord(b) == ord(a) + 1 for a, b in zip(letters, letters[1:])):
        return True
    return _INLINE_OPTIONS.search(text) is not None


def detect_kind(messages_text: str, response_format: Any = None) -> str:
    """The extractor kind for a request whose messages read ``messages_text``."""
    if _format_type(response_format) in _JSON_FORMATS:
        return "json"
    if lists_options(messages_text) or _CHOICE_WORDS.search(messages_text):
        return "choice"
    if _CODE_WORDS.search(messages_text) or _CODE_START.match(messages_text):
        return "code"
    if _MATH_WORDS.search(messages_text):
        return "number"
    return "embedding"
