"""``exact``: the whole reply, lightly normalised."""

from __future__ import annotations

import pytest

from coe_gateway.answers import build_extractor

EXACT = build_extractor("exact")


@pytest.mark.parametrize("text, key", [
    ("Paris", "paris"),
    ("  Paris.  ", "paris"),
    ('"Paris".', "paris"),
    ("'Paris'", "paris"),
    ("“Paris”!", "paris"),
    ("**Paris**", "paris"),
    ("`Paris`", "paris"),
    ("New   York\n City!", "new york city"),
    ("Hello, world!", "hello, world"),
    ("Straße", "strasse"),  # case-folded, not just lower-cased
    ("U.S.A.", "u.s.a"),
    ("It's fine...", "it's fine"),
])
def test_normalises(text: str, key: str) -> None:
    assert EXACT.extract(text) == key


@pytest.mark.parametrize("text", ["", "   ", "...", '""', "**", "?!"])
def test_empty_is_none(text: str) -> None:
    assert EXACT.extract(text) is None


def test_case_sensitive() -> None:
    strict = build_extractor("exact", {"case_sensitive": True})
    assert strict.extract(" 'Paris'. ") == "Paris"
    assert strict.extract("Paris") != strict.extract("paris")
    assert strict.describe() == {"kind": "exact", "case_sensitive": True}


def test_different_answers_disagree() -> None:
    assert EXACT.extract("Paris") != EXACT.extract("The capital is Paris.")
