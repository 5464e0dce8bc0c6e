"""Routing records: per-query results of several models, the data routers learn from and
policies are evaluated on.

The on-disk format is the JSONL (optionally gzipped) of ``shared/data/README.md``: one object
per line with ``id``, ``prompt``, ``category``, ``split``, ``scores`` ({model: 0..1}),
optional ``costs_usd``, ``output_chars``, ``image``, ``image_caption``, ``image_ocr``,
``meta``. In memory a data set is a :class:`RecordSet`, column-oriented so that metrics and
training are array operations: ``scores[i, j]`` is model ``models[j]``'s score on query ``i``
(NaN where that model has no result).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from coe_gateway.routers.base import Query


class RecordError(ValueError):
    """A malformed record: names the file, the line and the field."""

    def __init__(self, path: str, line: int, field_name: str, reason: str) -> None:
        super().__init__(f"{path}:{line}: {field_name}: {reason}")
        self.path, self.line, self.field, self.reason = path, line, field_name, reason


@dataclass
class RecordSet:
    """A column-oriented set of routing records.

    scores:       (N, M) float, NaN where missing
    costs:        (N, M) float USD or None when the source recorded no cost
    output_chars: (N, M) float or None
    answers:      per record {model: final answer or its whole response, None where none
                  was parsed}; empty when the source has no answers (what cascades compare)
    """

    ids: list[str]
    prompts: list[str]
    categories: list[str | None]
    splits: list[str | None]
    models: list[str]
    scores: np.ndarray
    costs: np.ndarray | None = None
    output_chars: np.ndarray | None = None
    images: list[str | None] = field(default_factory=list)
    extra_text: list[str] = field(default_factory=list)
    meta: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, str | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int] | np.ndarray) -> RecordSet:
        """The records at ``index`` (rows), all columns kept."""
        idx = np.asarray(index, dtype=np.int64)

        def pick(xs: list[Any]) -> list[Any]:
            return [xs[i] for i in idx] if xs else []

        return RecordSet(
            ids=pick(self.ids), prompts=pick(self.prompts), categories=pick(self.categories),
            splits=pick(self.splits), models=list(self.models), scores=self.scores[idx],
            costs=None if self.costs is None else self.costs[idx],
            output_chars=None if self.output_chars is None else self.output_chars[idx],
            images=pick(self.images), extra_text=pick(self.extra_text), meta=pick(self.meta),
            answers=pick(self.answers),
        )

    def select_models(self, models: Sequence[str]) -> RecordSet:
        """The columns of ``models`` only, in that order."""
        cols = [self.models.index(m) for m in models]
        out = self.subset(np.arange(len(self)))
        out.models = list(models)
        out.scores = self.scores[:, cols]
        out.costs = None if self.costs is None else self.costs[:, cols]
        out.output_chars = None if self.output_chars is None else self.output_chars[:, cols]
        return out

    def queries(self) -> list[Query]:
        """The records as router queries (prompt plus any image-derived text)."""
        out = []
        for i, prompt in enumerate(self.prompts):
            extra = self.extra_text[i] if self.extra_text else ""
            text = f"{prompt}\n{extra}" if extra else prompt
            image = self.images[i] if self.images else None
            out.append(Query(text=text, category=self.categories[i], image=image))
        return out


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; RecordError on invalid JSON."""
    p = Path(path)
    with _open(p) as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(str(p), n, "<json>", exc.msg) from exc
            if not isinstance(obj, dict):
                raise RecordError(str(p), n, "<root>", "a record must be a JSON object")
            yield n, obj


def _check_map(path: str, n: int, obj: dict[str, Any], key: str, kind: type) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(path, n, key, f"must be an object of model -> {kind.__name__}")
    for model, v in value.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise RecordError(path, n, f"{key}.{model}", f"must be a number, got {v!r}")
    return value


def _check_record(path: str, n: int, obj: dict[str, Any]) -> None:
    for key in ("id", "prompt"):
        if not isinstance(obj.get(key), str):
            raise RecordError(path, n, key, "missing or not a string")
    scores = _check_map(path, n, obj, "scores", float)
    if not scores:
        raise RecordError(path, n, "scores", "missing or empty")
    for model, v in scores.items():
        if v is not None and not 0.0 <= float(v) <= 1.0:
            raise RecordError(path, n, f"scores.{model}", f"must be in 0..1, got {v}")
    if obj.get("category") is not None and not isinstance(obj["category"], str):
        raise RecordError(path, n, "category", "must be a string or null")
    answers = obj.get("answers")
    if answers is not None:
        if not isinstance(answers, dict):
            raise RecordError(path, n, "answers", "must be an object of model -> string")
        for model, v in answers.items():
            if v is not None and not isinstance(v, str):
                raise RecordError(path, n, f"answers.{model}", f"must be a string or null, "
                                  f"got {v!r}")


def load_jsonl(path: str | Path) -> RecordSet:
    """Load a routing-records JSONL(.gz) file, validating every line."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, obj in iter_jsonl(path):
        _check_record(str(path), n, obj)
        if obj["id"] in seen:
            raise RecordError(str(path), n, "id", f"duplicate id {obj['id']!r}")
        seen.add(obj["id"])
        rows.append(obj)
    if not rows:
        raise RecordError(str(path), 0, "<file>", "no records")
    return from_rows(rows)


def _matrix(rows: list[dict[str, Any]], key: str, models: list[str]) -> np.ndarray | None:
    if not any(r.get(key) for r in rows):
        return None
    out = np.full((len(rows), len(models)), np.nan)
    col = {m: j for j, m in enumerate(models)}
    for i, r in enumerate(rows):
        for m, v in (r.get(key) or {}).items():
            if v is not None and m in col:
                out[i, col[m]] = float(v)
    return out


def from_rows(rows: list[dict[str, Any]]) -> RecordSet:
    """A RecordSet from already-validated record dicts (models in first-seen order)."""
    models: list[str] = []
    known: set[str] = set()
    for r in rows:
        for m in r["scores"]:
            if m not in known:
                known.add(m)
                models.append(m)
    extra = [
        "\n".join(str(r[k]) for k in ("image_caption", "image_ocr") if r.get(k)) for r in rows
    ]
    return RecordSet(
        ids=[r["id"] for r in rows],
        prompts=[r["prompt"] for r in rows],
        categories=[r.get("category") for r in rows],
        splits=[r.get("split") for r in rows],
        models=models,
        # validated rows all have non-empty scores, so this matrix is never None
        scores=cast(np.ndarray, _matrix(rows, "scores", models)),
        costs=_matrix(rows, "costs_usd", models),
        output_chars=_matrix(rows, "output_chars", models),
        images=[r.get("image") for r in rows],
        extra_text=extra if any(extra) else [],
        meta=[r.get("meta") or {} for r in rows],
        answers=[r.get("answers") or {} for r in rows] if any(r.get("answers") for r in rows)
        else [],
    )
