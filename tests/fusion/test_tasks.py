"""The shipped multiple-choice task files and the held-out protocol (splits, subsamples)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from coe_gateway.fusion.tasks import (
    DATA_DIR, HELDOUT, TASKS, McItem, heldout_sets, load_task, split_items, subsample, train_set,
)

COUNTS = {"arc_easy_test": 2376, "arc_easy_val": 570, "arc_challenge_test": 1172,
          "openbookqa_test": 500, "sciq_val": 1000}
QUERY = re.compile(r"\AQuestion: [^\n]+\nAnswer:\Z")


def _items(n: int, prefix: str = "q") -> list[McItem]:
    return [McItem(id=f"{prefix}{i:04d}", query=f"Question: {i}?\nAnswer:",
                   choices=("a", "b"), gold=i % 2) for i in range(n)]


def _ids(items: list[McItem]) -> list[str]:
    return [it.id for it in items]


def test_task_names_match_counts() -> None:
    assert set(TASKS) == set(COUNTS)


@pytest.mark.parametrize("name", TASKS)
def test_shipped_file(name: str) -> None:
    items = load_task(name)
    assert len(items) == COUNTS[name]
    assert len({it.id for it in items}) == len(items)
    for it in items:
        assert QUERY.match(it.query), it.query
        assert len(it.choices) >= 2 and 0 <= it.gold < len(it.choices)
        assert all(c.startswith(" ") and c[1:] == ch
                   for c, ch in zip(it.continuations, it.choices, strict=True))


def test_continuations() -> None:
    it = McItem(id="x", query="Question: 1+1?\nAnswer:", choices=("2", "3"), gold=0)
    assert it.continuations == (" 2", " 3")


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl.gz"):
        load_task("nope", tmp_path)
    rows = [{"id": "a", "query": "Question: q\nAnswer:", "choices": ["x", "y"], "gold": 0},
            {"id": "b", "query": "Question: q\nAnswer:", "choices": ["x", "y"], "gold": 2}]
    with gzip.open(tmp_path / "bad.jsonl.gz", "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"bad\.jsonl\.gz:2: 'gold'"):
        load_task("bad", tmp_path)
    with gzip.open(tmp_path / "junk.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"junk\.jsonl\.gz:2: invalid JSON"):
        load_task("junk", tmp_path)
    assert load_task("arc_easy_val", DATA_DIR)[0].id == load_task("arc_easy_val")[0].id


def test_split_deterministic_disjoint_covering() -> None:
    items = _items(101)
    train, test = split_items(items, seed=3)
    assert (train, test) == split_items(items, seed=3)
    assert len(train) == round(0.7 * 101) and len(train) + len(test) == 101
    assert not set(_ids(train)) & set(_ids(test))
    assert set(_ids(train)) | set(_ids(test)) == set(_ids(items))
    assert split_items(items, seed=4) != (train, test)
    assert split_items(list(reversed(items)), seed=3) == (train, test)
    assert split_items(items, train_fraction=0.0, seed=3)[0] == []
    with pytest.raises(ValueError):
        split_items(items, train_fraction=1.5)
    with pytest.raises(ValueError, match="repeated"):
        split_items(items + items[:1])


def test_subsample() -> None:
    items = _items(50)
    s10 = subsample(items, 10, seed=1)
    assert len(s10) == 10 and s10 == subsample(list(reversed(items)), 10, seed=1)
    assert set(_ids(s10)) <= set(_ids(subsample(items, 20, seed=1)))
    assert subsample(items, 10, seed=2) != s10
    assert subsample(items, 500, seed=1) == sorted(items, key=lambda it: it.id)
    with pytest.raises(ValueError):
        subsample(items, -1)


def test_heldout_and_train() -> None:
    train = train_set(seed=0)
    held = heldout_sets(seed=0)
    assert tuple(held) == HELDOUT
    assert len(train) == round(0.7 * 2376)
    assert len(held["arc_easy_heldout"]) == 2376 - len(train) + 570
    assert [len(held[k]) for k in HELDOUT[1:]] == [1172, 500, 1000]
    train_ids = set(_ids(train))
    for name, items in held.items():
        assert not train_ids & set(_ids(items)), name
    easy = set(_ids(load_task("arc_easy_test")))
    assert train_ids | (set(_ids(held["arc_easy_heldout"])) & easy) == easy
    assert _ids(train_set(seed=1)) != _ids(train)
