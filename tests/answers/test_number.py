"""``number``: the final number, normalised."""

from __future__ import annotations

import pytest

from coe_gateway.answers import build_extractor

NUMBER = build_extractor("number")


@pytest.mark.parametrize("text, key", [
    # normalisation
    ("1,200.0", "1200"),
    ("1200", "1200"),
    ("$1,200", "1200"),
    ("1200.50", "1200.5"),
    ("-3", "-3"),
    ("−3", "-3"),  # unicode minus
    ("50%", "50"),
    ("3/4", "0.75"),
    ("1/3", "0.333333333333333"),
    ("1e3", "1000"),
    ("2.5e-3", "0.0025"),
    ("1.5E+2", "150"),
    (".5", "0.5"),
    ("0.0", "0"),
    ("-0", "0"),
    ("£3.10", "3.1"),
    ("1,000,000", "1000000"),
    ("007", "7"),
    # where the answer is read
    ("Natalia sold 48/2 = 24 clips in May.\n48 + 24 = 72\n#### 72", "72"),
    ("#### 1,234 (she had 5 left)", "1234"),
    ("So the final answer is $\\boxed{1,024}$ bytes, not 2048.", "1024"),
    ("The answer is 42 apples, which is 6 times 7.", "42"),
    ("Answer: $-3.50 (a loss)", "-3.5"),
    ("The answer is: 1,000,000", "1000000"),
    ("Answer: .5", "0.5"),
    ("So 12 * 7 = 84.", "84"),
    ("Total = 84 apples for 3 kids", "84"),
    ("x = 5, so the total is 17", "17"),
    ("a = 3 and b = 4", "4"),
    ("She earns 12 * 50 = $600.\nThen 600 - 100 = 500 remain.\nShe saves all 500 of it", "500"),
    ("First 3 boxes, then 4 more: 7 boxes in all.", "7"),
    ("It takes 2.5 hours.", "2.5"),
    ("COVID-19", "19"),
    ("She is 5 - 3 years older", "3"),  # a minus between operands is not a sign
    ("The temperature fell to -3 degrees.", "-3"),
    ("Between 1, 2, 3", "3"),
])
def test_reads_the_number(text: str, key: str) -> None:
    assert NUMBER.extract(text) == key


@pytest.mark.parametrize("a, b", [
    ("1,200.0", "1200"),
    ("The answer is $1,200.", "#### 1200"),
    ("50%", "The answer is 50"),
    ("3/4", "0.75"),
    ("1e3", "1000.00"),
    ("So x = 18", "The answer is 18.0 dollars"),
])
def test_equal_values_agree(a: str, b: str) -> None:
    assert NUMBER.extract(a) == NUMBER.extract(b) is not None


@pytest.mark.parametrize("text", [
    "",
    "I cannot solve this.",
    "The answer is unknown.",
    "H2O",  # a digit inside a word
    "1/0",
])
def test_unparseable_is_none(text: str) -> None:
    assert NUMBER.extract(text) is None


def test_marker_without_a_number_falls_through() -> None:
    assert NUMBER.extract("It is 12 * 7 = 84. The answer is above.") == "84"
    assert NUMBER.extract("####\nso 9") == "9"


def test_key_is_never_in_exponent_form() -> None:
    for text in ("1e30", "12e-10", "1,200,000,000"):
        key = NUMBER.extract(text)
        assert key is not None and "e" not in key.lower()
    assert NUMBER.extract("1e30") == "1" + "0" * 30
