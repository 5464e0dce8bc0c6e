"""``number``: the final numeric answer, normalised.

Where the answer is read, the first rule that finds a number winning:

1. after the last ``####`` (GSM8K's convention);
2. inside the last ``\\boxed{...}``;
3. after the last "answer is" / "answer:" (the first number following it);
4. after the last ``=`` of the last clause (line, sentence, or part after ", so" / ", and"
   ...) that holds a number: "so 12 * 7 = 84 apples for 3 kids" reads 84, but "x = 5, so the
   total is 17" reads 17;
5. else the last number in the text.

Numbers may carry a sign (``-3``, ``−3``), a currency sign (``$1,200``), thousands
separators (``1,200``; only proper groups of three), decimals, an exponent (``1e3``), a
percent sign (``50%`` reads 50) or be a fraction (``3/4`` reads 0.75). The key is a plain
decimal string of the value, trailing zeros stripped and never in exponent form, so
``1,200.0``, ``1200`` and ``$1,200`` all give ``"1200"`` and ``1200.50`` gives ``"1200.5"``.
Fractions are divided to 15 significant digits.
"""

from __future__ import annotations

import re
from decimal import Decimal, DivisionByZero, InvalidOperation, localcontext

from coe_gateway.answers.base import Extractor, register_extractor

NUMBER = re.compile(r"""
    (?<![\w.])                                   # not inside a word or another number
    (?P<sign>[-−+]?)
    [$€£¥]?\s?
    (?P<mant>(?:\d{1,3}(?:,\d{3})+|\d+)(?!\d)(?:\.\d+)?|\.\d+)
    (?P<exp>[eE][-+]?\d+(?![\w.]))?
    (?:/(?P<den>\d+)(?![\d/]))?
    """, re.VERBOSE)
_MARKERS = (re.compile(r"####"), re.compile(r"\\boxed\{"),
            re.compile(r"\banswer\b\s*(?:is|was|:|=|would\s+be|should\s+be)", re.IGNORECASE))
_CLAUSE = re.compile(r"\n|[.!?;](?=\s)|,\s*(?=(?:so|thus|hence|therefore|which|and)\b)",
                     re.IGNORECASE)
FRACTION_DIGITS = 15


def number_key(m: re.Match[str]) -> str | None:
    """The canonical decimal string of a :data:`NUMBER` match (None: not a number, x/0).

    A minus sign right after a digit or ")" ("5 -3", "(2)-1") is an operator, not a sign."""
    try:
        value = Decimal(m["mant"].replace(",", "") + (m["exp"] or ""))
        if m["den"]:
            with localcontext() as ctx:
                ctx.prec = FRACTION_DIGITS
                value = value / Decimal(m["den"])
    except (InvalidOperation, DivisionByZero):
        return None
    if m["sign"] in ("-", "−") and not _after_operand(m):
        value = -value
    return canonical(value)


def _after_operand(m: re.Match[str]) -> bool:
    before = m.string[:m.start()].rstrip()
    return bool(before) and (before[-1].isdigit() or before[-1] == ")")


def canonical(value: Decimal) -> str:
    """Plain decimal notation, no trailing zeros, no exponent, ``0`` for ``-0``."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def first_number(text: str) -> str | None:
    """The key of the first number in ``text`` that reads as one."""
    for m in NUMBER.finditer(text):
        key = number_key(m)
        if key is not None:
            return key
    return None


def last_number(text: str) -> str | None:
    """The key of the last number in ``text`` that reads as one."""
    keys = [number_key(m) for m in NUMBER.finditer(text)]
    found = [k for k in keys if k is not None]
    return found[-1] if found else None


def after_marker(text: str, marker: re.Pattern[str]) -> str | None:
    """The first number after the last occurrence of ``marker``."""
    hits = list(marker.finditer(text))
    return first_number(text[hits[-1].end():]) if hits else None


def after_equals(text: str) -> str | None:
    """The first number after the last ``=`` of the last clause holding a number."""
    clauses = [c for c in _CLAUSE.split(text) if c and NUMBER.search(c)]
    if not clauses or "=" not in clauses[-1]:
        return None
    return first_number(clauses[-1].rsplit("=", 1)[1])


@register_extractor("number")
class NumberExtractor(Extractor):
    """The final number of a reply (see the module's rules)."""

    def extract(self, text: str) -> str | None:
        for marker in _MARKERS:
            key = after_marker(text, marker)
            if key is not None:
                return key
        return after_equals(text) or last_number(text)
