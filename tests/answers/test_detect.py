"""detect_kind on realistic prompts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from coe_gateway.answers import EXTRACTORS, detect_kind

MMLU = """The following are multiple choice questions (with answers) about physics.

What is the SI unit of force?
A) Joule
B) Newton
C) Watt
D) Pascal
Answer:"""

MMLU_PRO = """Question: Which gas do plants absorb during photosynthesis?
Options:
(A) Oxygen
(B) Carbon dioxide
(C) Nitrogen
(D) Helium
(E) Argon
Think step by step, then finish with "The answer is (X)"."""

MMLU_MATH = """What is 12 * 7?
A. 74
B. 84
C. 94
D. 104"""

GSM8K = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many "
         "clips in May. How many clips did Natalia sell altogether in April and May?")

HUMANEVAL = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    """
'''


@pytest.mark.parametrize("prompt, kind", [
    (MMLU, "choice"),
    (MMLU_PRO, "choice"),
    (MMLU_MATH, "choice"),  # options beat the arithmetic
    ("Which is prime? A. 4\nB. 9\nC. 7\nD. 10", "choice"),  # A shares the question's line
    ("Which is prime? (A) 4 (B) 9 (C) 7 (D) 10", "choice"),
    ("Pick one: A) red B) green C) blue", "choice"),
    ("Is the sky blue? Answer with the letter of the correct option.", "choice"),
    ("This is a multiple-choice question about law. ...", "choice"),
    (GSM8K, "number"),
    ("Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
     "babysitting. How much did she earn?", "number"),
    ("What is 12 * 7?", "number"),
    ("Calculate the area of a circle of radius 3 cm.", "number"),
    ("Solve for x: 2x + 3 = 11", "number"),
    ("What percent of 80 is 20?", "number"),
    ("Janet has 3 ducks... Put the final answer after ####.", "number"),
    ("What is 9 - 4?", "number"),
    ("Write a Python function that returns the n-th Fibonacci number.", "code"),
    ("Implement a function `is_palindrome(s)` in Rust.", "code"),
    ("How do I reverse a list in Python?", "code"),
    ("Fix this code:\n```js\nconsole.log(1\n```", "code"),
    ("Write a SQL query that counts the orders per customer in 2023.", "code"),
    (HUMANEVAL, "code"),
    ("What is the capital of France?", "embedding"),
    ("Who wrote Hamlet?", "embedding"),
    ("Explain the plot of Hamlet in three sentences.", "embedding"),
    ("Section A. Introduction: tell me about the history of Rome.", "embedding"),
    ("I have a 2-year-old son. What should he eat?", "embedding"),
    ("What happened on 1969-07-20?", "embedding"),  # a date is not arithmetic
    ("Write a poem about the sea.", "embedding"),
    ("", "embedding"),
])
def test_detect(prompt: str, kind: str) -> None:
    assert detect_kind(prompt) == kind
    assert kind in EXTRACTORS


@pytest.mark.parametrize("fmt", [
    {"type": "json_object"},
    {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    SimpleNamespace(type="json_object"),
    "json_schema",
])
def test_response_format_json(fmt: object) -> None:
    assert detect_kind(MMLU, fmt) == "json"


@pytest.mark.parametrize("fmt", [None, {"type": "text"}, {}, SimpleNamespace(), 3])
def test_other_response_formats_are_ignored(fmt: object) -> None:
    assert detect_kind(GSM8K, fmt) == "number"
