"""The resumable results file: one JSON object a line (``rows.jsonl``), keyed by
(type, split, router, variant); a rerun skips every key already there. The choices of the
MMR split (what the bootstrap resamples) are kept as ``.npy`` files beside it in a cache
folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def row_key(row: dict[str, Any]) -> str:
    return "|".join(str(row.get(k, "")) for k in ("type", "split", "router", "variant"))


class RowStore:
    """Rows read at start, appended (and flushed) one by one."""

    def __init__(self, path: Path, cache: Path) -> None:
        self.path, self.cache = path, cache
        self.rows: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[row_key(row)] = row

    def has(self, **key: Any) -> bool:
        return row_key(key) in self.rows

    def add(self, row: dict[str, Any]) -> None:
        self.rows[row_key(row)] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, allow_nan=True) + "\n")

    def of_type(self, kind: str) -> Iterator[dict[str, Any]]:
        return (r for r in self.rows.values() if r.get("type") == kind)

    def _choice_path(self, split: str, router: str, variant: str) -> Path:
        safe = variant.replace("/", "_").replace("+", "p")
        return self.cache / split / router / f"{safe}.npy"

    def save_choices(self, split: str, router: str, variant: str, choices: np.ndarray) -> None:
        path = self._choice_path(split, router, variant)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, choices)

    def load_choices(self, split: str, router: str, variant: str) -> np.ndarray | None:
        path = self._choice_path(split, router, variant)
        return np.load(path) if path.exists() else None
