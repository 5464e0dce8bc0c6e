"""Reading evaluation data: routing records (JSONL, gzipped or not), RouterBench's own CSV
and pickle formats, ``models.json``, and the train/test split.

RouterBench (withmartian/routerbench, MIT) stores one row per query with columns ``prompt``
(a Python list literal of the turns), ``eval_name``, one score column per model,
``<model>|model_response``, ``<model>|total_cost`` and ``oracle_model_to_route_to``. A model
is every name with a ``|total_cost`` or ``|model_response`` column. An empty score cell is a
missing result (NaN). ``output_chars`` is the length of the model's response text. The
split is the file name's ``_train``/``_test`` suffix or a ``split`` column where present.

Every malformed input raises :class:`~coe_gateway.records.RecordError` naming the file, the
line (the CSV line, or the pickle's row index) and the field.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from coe_gateway.records import RecordError, RecordSet, from_rows, load_jsonl

ROUTERBENCH_FIXED = ("", "Unnamed: 0", "sample_id", "prompt", "eval_name",
                     "oracle_model_to_route_to", "split")


def detect_format(path: str | Path) -> str:
    """``jsonl``, ``routerbench-csv`` or ``routerbench-pickle`` from the file name."""
    name = Path(path).name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        return "jsonl"
    if name.endswith((".csv", ".csv.gz")):
        return "routerbench-csv"
    if name.endswith((".pkl", ".pickle", ".pkl.gz")):
        return "routerbench-pickle"
    raise RecordError(str(path), 0, "<file>", "unknown format; name the file *.jsonl[.gz], "
                      "*.csv or *.pkl, or set data.format in the suite")


def load_records(paths: Sequence[str | Path], fmt: str = "auto") -> RecordSet:
    """Load and concatenate data files (models: the union, NaN where a file lacks one)."""
    parts = []
    for p in paths:
        if not Path(p).exists():
            raise RecordError(str(p), 0, "<file>", "no such file")
        kind = detect_format(p) if fmt == "auto" else fmt
        loader = {"jsonl": load_jsonl, "routerbench-csv": load_routerbench_csv,
                  "routerbench-pickle": load_routerbench_pickle}[kind]
        parts.append((str(p), resolve_images(loader(p), Path(p).parent)))
    return concat(parts)


def resolve_images(records: RecordSet, base: Path) -> RecordSet:
    """Relative image paths (``images/1.jpg``) made absolute against the data file's folder,
    so that routers reading images find them; URLs and absolute paths are kept."""
    if records.images:
        records.images = [
            im if not im or "://" in im or Path(im).is_absolute() else str((base / im).resolve())
            for im in records.images
        ]
    return records


def concat(parts: Sequence[tuple[str, RecordSet]]) -> RecordSet:
    """One RecordSet from several (file name, RecordSet); ids must stay unique."""
    if len(parts) == 1:
        return parts[0][1]
    models: list[str] = []
    for _, rs in parts:
        models += [m for m in rs.models if m not in models]
    seen: set[str] = set()
    for path, rs in parts:
        for i, rid in enumerate(rs.ids):
            if rid in seen:
                raise RecordError(path, i + 1, "id", f"duplicate id {rid!r} across files")
            seen.add(rid)

    def stack(attr: str) -> np.ndarray | None:
        if all(getattr(rs, attr) is None for _, rs in parts):
            return None
        blocks = []
        for _, rs in parts:
            block = np.full((len(rs), len(models)), np.nan)  # (n_i, M)
            value = getattr(rs, attr)
            if value is not None:
                block[:, [models.index(m) for m in rs.models]] = value
            blocks.append(block)
        stacked: np.ndarray = np.concatenate(blocks)
        return stacked

    def join(attr: str, fill: Any) -> list[Any]:
        if not any(getattr(rs, attr) for _, rs in parts):
            return []
        return [x for _, rs in parts for x in (getattr(rs, attr) or [fill] * len(rs))]

    return RecordSet(
        ids=join("ids", ""), prompts=join("prompts", ""), categories=join("categories", None),
        # every RecordSet has scores, so the stack of them is never None
        splits=join("splits", None), models=models, scores=cast(np.ndarray, stack("scores")),
        costs=stack("costs"), output_chars=stack("output_chars"), images=join("images", None),
        extra_text=join("extra_text", ""), meta=join("meta", {}),
        answers=join("answers", {}),
    )


# -- RouterBench --------------------------------------------------------------------------


def _routerbench_models(path: str, columns: Sequence[str]) -> list[str]:
    models: list[str] = []
    for c in columns:
        base, sep, suffix = c.partition("|")
        if sep and suffix in ("total_cost", "model_response") and base not in models:
            models.append(base)
    if not models:
        raise RecordError(path, 1, "<header>", "no '<model>|total_cost' columns: not RouterBench")
    for m in models:
        if m not in columns:
            raise RecordError(path, 1, m, "score column missing for this model")
    for c in ("prompt", "eval_name"):
        if c not in columns:
            raise RecordError(path, 1, c, "column missing")
    return sorted(models, key=list(columns).index)  # the order of the score columns


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _number(path: str, line: int, name: str, value: Any, low: float, high: float) -> float:
    if _blank(value):
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise RecordError(path, line, name, f"not a number: {value!r}") from None
    if not low <= x <= high:
        raise RecordError(path, line, name, f"must be in {low}..{high}, got {x}")
    return x


def _turns(value: Any) -> str:
    """RouterBench prompts and responses are list literals of turns; join them."""
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    text = str(value)
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
        if isinstance(parsed, list):
            return "\n".join(str(v) for v in parsed)
    return text


def _split_from_name(path: str) -> str | None:
    stem = Path(path).name.split(".")[0].lower()
    for split in ("train", "test"):
        if stem.endswith(("_" + split, "-" + split)):
            return split
    return None


def routerbench_rows(
    path: str, columns: Sequence[str], rows: Iterable[tuple[int, Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Routing-record dicts from RouterBench rows ((line, {column: value}) pairs)."""
    models = _routerbench_models(path, columns)
    file_split = _split_from_name(path)
    out: list[dict[str, Any]] = []
    for line, row in rows:
        scores = {m: _number(path, line, m, row.get(m), 0.0, 1.0) for m in models}
        if all(math.isnan(v) for v in scores.values()):
            raise RecordError(path, line, "scores", "no model has a score in this row")
        prompt = row.get("prompt")
        if _blank(prompt):
            raise RecordError(path, line, "prompt", "missing")
        costs = {m: _number(path, line, f"{m}|total_cost", row.get(f"{m}|total_cost"), 0.0,
                            math.inf) for m in models}
        outputs = {m: float(len(_turns(row[f"{m}|model_response"])))
                   for m in models if not _blank(row.get(f"{m}|model_response"))}
        index = row.get("") if "" in columns else row.get("Unnamed: 0")
        key = index if not _blank(index) else f"{row.get('sample_id', '')}#{line}"
        split = row.get("split")
        out.append({
            "id": f"routerbench/{key}", "prompt": _turns(prompt),
            "category": None if _blank(row.get("eval_name")) else str(row["eval_name"]),
            "split": str(split) if not _blank(split) else file_split,
            "scores": {m: v for m, v in scores.items() if not math.isnan(v)},
            "costs_usd": {m: v for m, v in costs.items() if not math.isnan(v)},
            "output_chars": outputs,
            "answers": {m: _turns(row[f"{m}|model_response"]) for m in models
                        if not _blank(row.get(f"{m}|model_response"))},
            "meta": {k: row[k] for k in ("sample_id", "oracle_model_to_route_to")
                     if k in columns and not _blank(row.get(k))},
        })
    if not out:
        raise RecordError(path, 0, "<file>", "no records")
    return out


def _with_models(rows: list[dict[str, Any]], models: list[str]) -> RecordSet:
    rs = from_rows(rows)
    order = [m for m in models if m in rs.models]  # keep the file's column order
    return rs.select_models(order) if order != rs.models else rs


def load_routerbench_csv(path: str | Path) -> RecordSet:
    """RouterBench's CSV format (one file, e.g. the RouterDC ``*_train.csv``/``*_test.csv``)."""
    p = str(path)
    csv.field_size_limit(sys.maxsize)
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise RecordError(p, 1, "<header>", "empty file")
        columns = list(reader.fieldnames)
        rows = routerbench_rows(p, columns, ((reader.line_num, r) for r in reader))
    return _with_models(rows, _routerbench_models(p, columns))


def load_routerbench_pickle(path: str | Path) -> RecordSet:
    """RouterBench's own pickle (a pandas DataFrame, e.g. ``routerbench_0shot.pkl``).

    Unpickling runs code from the file: load only pickles from a source you trust. Needs
    pandas (``pip install pandas``). The "line" of an error is the DataFrame's row number.
    """
    p = str(path)
    try:
        import pandas as pd
    except ImportError:
        raise RecordError(p, 0, "<file>", "reading RouterBench pickles needs pandas "
                          "(pip install pandas)") from None
    try:
        frame = pd.read_pickle(p)
    except Exception as exc:
        raise RecordError(p, 0, "<file>", f"cannot unpickle: {exc}") from exc
    if not isinstance(frame, pd.DataFrame):
        raise RecordError(p, 0, "<file>", f"holds a {type(frame).__name__}, not a DataFrame")
    frame.columns = [str(c) for c in frame.columns]
    columns = list(frame.columns)
    records = frame.to_dict(orient="records")
    rows = routerbench_rows(p, columns, ((i + 1, r) for i, r in enumerate(records)))
    return _with_models(rows, _routerbench_models(p, columns))


# -- models.json and splits ---------------------------------------------------------------


def load_models_json(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """``{model: {"active_params_b": float|None, "price_usd_per_mtok": [in, out]|None}}``."""
    if path is None or not Path(path).exists():
        return {}
    p = str(path)
    try:
        data = json.loads(Path(p).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecordError(p, exc.lineno, "<json>", exc.msg) from exc
    if not isinstance(data, dict):
        raise RecordError(p, 1, "<root>", "must be an object of model -> facts")
    for model, facts in data.items():
        if not isinstance(facts, dict):
            raise RecordError(p, 0, model, "must be an object")
        price = facts.get("price_usd_per_mtok")
        if price is not None and (not isinstance(price, list) or len(price) != 2
                                  or not all(isinstance(x, (int, float)) for x in price)):
            raise RecordError(p, 0, f"{model}.price_usd_per_mtok", "must be [input, output]")
        params = facts.get("active_params_b")
        if params is not None and not isinstance(params, (int, float)):
            raise RecordError(p, 0, f"{model}.active_params_b", "must be a number")
    return data


def default_models_json(paths: Sequence[str]) -> str | None:
    candidate = Path(paths[0]).parent / "models.json"
    return str(candidate) if candidate.exists() else None


def _groups(ids: Sequence[str], pattern: str | None) -> np.ndarray:
    """(N,) group number of each record: by ``pattern``'s first group (or match) on the id;
    every record its own group without a pattern or a match."""
    if pattern is None:
        return np.arange(len(ids))
    rx = re.compile(pattern)
    keys: dict[str, int] = {}
    out = np.empty(len(ids), dtype=np.int64)
    for i, rid in enumerate(ids):
        m = rx.search(rid)
        key = (m.group(1) if m.groups() else m.group(0)) if m else f"\0{i}"
        out[i] = keys.setdefault(key, len(keys))
    return out


def split_indices(
    records: RecordSet, test_fraction: float, seed: int, use_source_split: bool = True,
    group_pattern: str | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(train index, test index, how): the source's split when every record has one and
    both parts are non-empty, else a seeded random split (of groups, with a pattern)."""
    splits = records.splits
    if use_source_split and splits and all(s in ("train", "test") for s in splits):
        train = np.array([i for i, s in enumerate(splits) if s == "train"], dtype=np.int64)
        test = np.array([i for i, s in enumerate(splits) if s == "test"], dtype=np.int64)
        if len(train) and len(test):
            return train, test, "source split"
    n = len(records)
    if n < 2:
        raise RecordError("<records>", 0, "split", "need at least 2 records to split")
    groups = _groups(records.ids, group_pattern)
    n_groups = int(groups.max()) + 1
    if n_groups < 2:
        raise RecordError("<records>", 0, "split.group_pattern", "puts every record in one group")
    perm = np.random.default_rng(seed).permutation(n_groups)
    n_test = min(max(1, round(n_groups * test_fraction)), n_groups - 1)
    is_test = np.isin(groups, perm[:n_test])
    test, train = np.flatnonzero(is_test), np.flatnonzero(~is_test)
    grouped = f", grouped by {group_pattern!r}" if group_pattern else ""
    return train, test, f"random split (seed {seed}, test fraction {test_fraction}{grouped})"
