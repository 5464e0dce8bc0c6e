"""Fixtures of the evaluation tests: the shared data folder (tests that need it skip when it
is absent) and a small hand-made data set with its suite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"

# Three models on eight queries. "cheap" is right on the easy half, "big" on all but one,
# "mid" on the odd ones; output lengths make "big" the most expensive per answer.
TINY_SCORES = {
    "cheap": [1, 1, 1, 1, 0, 0, 0, 0],
    "mid": [0, 1, 0, 1, 0, 1, 0, 1],
    "big": [1, 1, 1, 1, 1, 1, 1, 0],
}


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"no shared data at {SHARED_DATA}")
    return SHARED_DATA


def write_tiny_records(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(8):
            fh.write(json.dumps({
                "id": f"tiny/{i}", "prompt": "q" * (40 + 4 * i),
                "category": "easy" if i < 4 else "hard",
                "scores": {m: float(s[i]) for m, s in TINY_SCORES.items()},
                "output_chars": {"cheap": 40, "mid": 80, "big": 400},
            }) + "\n")
    return path


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Path:
    write_tiny_records(tmp_path / "tiny.jsonl")
    suite = tmp_path / "tiny.yaml"
    suite.write_text(
        "name: tiny\n"
        "data:\n  paths: [tiny.jsonl]\n  attribution: hand-made test data\n"
        "split: {test_fraction: 0.5, seed: 1}\n"
        "costs:\n  model: tokens-times-price\n"
        "  prices: {cheap: [0.1, 0.1], mid: [1.0, 1.0], big: [10.0, 10.0]}\n"
        "routers:\n  - {name: prior, kind: prior}\n"
        "policies:\n  - {kind: trade-off, sweep: 12}\n"
        "  - {kind: cheapest-above-target, sweep: [0.0, 0.5, 0.9, 1.0]}\n",
        encoding="utf-8",
    )
    return suite
