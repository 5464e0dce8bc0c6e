"""``choice``: letters from realistic multiple-choice replies."""

from __future__ import annotations

import pytest

from coe_gateway.answers import build_extractor

CHOICE = build_extractor("choice")


@pytest.mark.parametrize("text, key", [
    # explicit statements
    ("The answer is (C).", "C"),
    ("The answer is C.", "C"),
    ("the answer is C because the others are wrong", "C"),
    ("Answer: c) Mitochondria", "C"),
    ("Answer: (b)", "B"),
    ("ANSWER: D", "D"),
    ("Final answer: J", "J"),
    ("The correct answer is: **D**", "D"),
    ("The correct answer is option B.", "B"),
    ("So the answer is probably E.", "E"),
    ("The correct option is F", "F"),
    ("\\boxed{G}", "G"),
    ("Therefore the final answer is $\\boxed{\\text{H}}$.", "H"),
    ("I think B is correct.", "B"),
    ("(D) is the right one.", "D"),
    ("E is the best choice here.", "E"),
    ("The answer is I.", "I"),
    ("The answer is (I)", "I"),
    ("Answer: A", "A"),
    ("The answer is A because water is wet.", "A"),
    # the last explicit statement wins
    ("The answer is B. Wait, no: re-reading the question, the answer is C.", "C"),
    ("Answers A and B are both wrong. The answer is C.", "C"),
    ("Option A is wrong because of friction. The answer is (D).", "D"),
    # a lone letter opening the reply
    ("C", "C"),
    ("**C**", "C"),
    ("`B`", "B"),
    ("  D  ", "D"),
    ("(B) 42", "B"),
    ("B) 42", "B"),
    ("D. Paris", "D"),
    ("C\n\nBecause the force doubles.", "C"),
    ("C because the force doubles.", "C"),
    ("B, since 2 + 2 = 4.", "B"),
    ("A", "A"),
    ("A.", "A"),
    ("A)", "A"),
    ("A: yes", "A"),
    ("A\nThe others are wrong.", "A"),
    ("a)", "A"),
    ("c", "C"),
    # the last parenthesised capital letter
    ("Hmm, (B) looks good, but (E) fits better.", "E"),
    ("A careful look shows that (C) holds.", "C"),
])
def test_reads_the_letter(text: str, key: str) -> None:
    assert CHOICE.extract(text) == key


@pytest.mark.parametrize("text", [
    "A cat is a mammal.",  # the article, not option A
    "A good question; I am not sure.",
    "I think so.",  # the pronoun, not option I
    "I don't know.",
    "the answer is a tricky one",  # lower-case a as a word
    "The answer is unclear.",
    "Paris",
    "",
    "   ",
    "42",
    "The answer is K.",  # not one of the letters
    "answer I think is B",  # "I" after "answer" is the pronoun; B is not delimited
])
def test_unparseable_is_none(text: str) -> None:
    assert CHOICE.extract(text) is None


def test_article_a_then_a_real_answer() -> None:
    assert CHOICE.extract("A force acts on the block, so the answer is B.") == "B"
    assert CHOICE.extract("A careful reading gives B.") is None  # B is not delimited


def test_custom_letters() -> None:
    four = build_extractor("choice", {"letters": "ABCD"})
    assert four.extract("The answer is (E).") is None
    assert four.extract("E") is None
    assert four.extract("The answer is (D).") == "D"
    assert four.extract("I think it's (E), no, (B).") == "B"


def test_keys_of_several() -> None:
    assert CHOICE.keys(["The answer is (C).", "**C**", "I think B is correct", None,
                        "no idea"]) == ["C", "C", "B", None, None]
