"""Answer-aware cascades (agree, verify and their gated forms) through a real Gateway on
in-memory fake backends (coe_gateway.testing.fake_backend): accepted and escalated
answers, plain and streaming, failures and timeouts counted as disagreement, the budget hold
and its settlement, client disconnects, metrics and the routing log."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from coe_gateway.budget import Tenant
from coe_gateway.protocol import ChatRequest, max_prompt_tokens
from coe_gateway.relay import Reply
from coe_gateway.routing_log import RoutingLog
from coe_gateway.testing.fake_backend import FakeBackend, Script, fake_config, fake_gateway

QUESTION = [{"role": "user", "content": "Which is right?\nA) one\nB) two\nC) three\n"
             "Answer with the letter."}]
EXPERTS = ["a", "b", "c"]  # priors 0.3, 0.6, 0.9; prices rising: a cheapest, c strongest


def req(strategy: str = "agree", params: dict[str, Any] | None = None,
        **kw: Any) -> ChatRequest:
    coe: dict[str, Any] = {"strategy": strategy, "answer": "choice",
                           "params": {"floor": 0.3, **(params or {})}}
    return ChatRequest({"model": "auto", "messages": QUESTION, "coe": coe, **kw})


def gateway(scripts: dict[str, Any], tmp_path: Path | None = None) -> Any:
    backends = {e: FakeBackend(e, scripts.get(e, Script("The answer is (C)."))) for e in EXPERTS}
    log = RoutingLog(tmp_path / "log.jsonl") if tmp_path else None
    return fake_gateway(backends, fake_config(EXPERTS), routing_log=log), backends


def routing(reply: Reply) -> dict[str, Any]:
    assert reply.body is not None
    out: dict[str, Any] = json.loads(reply.body)["coe_routing"]
    return out


async def read(reply: Reply) -> list[Any]:
    assert reply.stream is not None
    raw = [c async for c in reply.stream]
    assert raw[-1] == b"data: [DONE]\n\n"
    return [json.loads(c[6:]) for c in raw[:-1]]


def cascade_count(gw: Any, outcome: str) -> float:
    return sum(s.value for m in gw.metrics.cascade.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels["outcome"] == outcome)


async def test_agree_fake_backend_cheap_experts_agree_strong_never_called() -> None:
    gw, b = gateway({"a": Script("B"), "b": Script("I think (B).")})
    reply = await gw.chat(req())
    r = routing(reply)
    assert reply.expert == "a" or reply.expert == "b"
    assert len(b["c"].calls) == 0
    assert not any(call.get("stream") for call in b["a"].calls + b["b"].calls)
    step = r["cascade"]["steps"][0]
    assert step["outcome"] == "accepted" and step["answers"] == {"a": "B", "b": "B"}
    assert step["agreement"] == 1.0
    assert sorted(a["verdict"] for a in r["attempts"]) == ["accepted", "rejected"]
    assert "agree" in r["reason"] and cascade_count(gw, "accepted") == 1


async def test_agree_fake_backend_disagreement_escalates_and_streams_the_strong_expert() -> None:
    gw, b = gateway({"a": Script("A"), "b": Script("B"), "c": Script("the answer is C")})
    objs = await read(await gw.chat(req(stream=True)))
    r = objs[0]["coe_routing"]
    assert r["expert"] == "c" and b["c"].calls[0]["stream"] is True  # streamed, not replayed
    assert [s["outcome"] for s in r["cascade"]["steps"]] == ["escalated"]
    text = "".join(o["choices"][0]["delta"].get("content", "") for o in objs if o["choices"])
    assert text == "the answer is C"
    assert cascade_count(gw, "escalated") == 1


async def test_agree_fake_backend_accepted_answer_is_replayed_as_sse() -> None:
    gw, b = gateway({"a": Script("B"), "b": Script("B")})
    objs = await read(await gw.chat(req(stream=True, stream_options={"include_usage": True})))
    for call in b["a"].calls + b["b"].calls:  # the checked tier never streams
        assert call["stream"] is False and "stream_options" not in call
    assert objs[0]["object"] == "chat.completion.chunk" and "coe_routing" in objs[0]
    text = "".join(o["choices"][0]["delta"].get("content", "") for o in objs if o["choices"])
    assert text == "B" and objs[-1]["usage"]["completion_tokens"] == 1


async def test_agree_fake_backend_failed_cheap_expert_is_disagreement_not_error() -> None:
    gw, _ = gateway({"a": Script(fail_status=503), "b": Script("B"), "c": Script("C")})
    r = routing(await gw.chat(req()))
    assert r["expert"] == "c"
    verdicts = {a["expert"]: a["verdict"] for a in r["attempts"]}
    assert verdicts == {"a": "failed", "b": "rejected", "c": "accepted"}
    assert r["cascade"]["steps"][0]["answers"] == {"a": None, "b": "B"}


async def test_agree_fake_backend_tier_timeout_counts_as_disagreement() -> None:
    gw, _ = gateway({"a": Script("B", delay_s=1.0), "b": Script("B"), "c": Script("C")})
    r = routing(await gw.chat(req(params={"timeout_s": 0.05})))
    slow = next(a for a in r["attempts"] if a["expert"] == "a")
    assert slow["status"] == 504 and slow["verdict"] == "failed"
    assert r["expert"] == "c"


async def test_agree_fake_backend_timeouts_per_tier() -> None:
    cfg = fake_config(["a", "b", "c", "d"])
    backends = {"a": FakeBackend("a", Script("A")), "b": FakeBackend("b", Script("B")),
                "c": FakeBackend("c", Script("B", delay_s=0.3)),
                "d": FakeBackend("d", Script("D", delay_s=0.3))}
    gw = fake_gateway(backends, cfg)
    params = {"k": 2, "extra": 1, "floor": 0.2, "timeout_s": [5, 0.05]}
    r = routing(await gw.chat(req(params=params)))
    slow = [a for a in r["attempts"] if a["status"] == 504]
    assert {a["expert"] for a in slow} == {"c", "d"}  # tiers 1 and 2 had 0.05 s
    assert r["cascade"]["steps"][-1]["outcome"] == "voted"


async def test_agree_fake_backend_extra_tier_votes_when_strong_disagrees() -> None:
    cfg = fake_config(["a", "b", "c", "d"])  # d strongest; c is the extra expert
    backends = {"a": FakeBackend("a", Script("A")), "b": FakeBackend("b", Script("B")),
                "c": FakeBackend("c", Script("B")), "d": FakeBackend("d", Script("D"))}
    gw = fake_gateway(backends, cfg)
    r = routing(await gw.chat(req(params={"k": 2, "extra": 1, "floor": 0.2})))
    assert [s["outcome"] for s in r["cascade"]["steps"]] == ["escalated", "escalated",
                                                             "accepted"]
    assert r["cascade"]["steps"][-1]["answer"] == "B"  # b and c outvote d


async def test_agree_fake_backend_lone_cheap_expert_is_not_asked_when_m_is_two() -> None:
    backends = {"a": FakeBackend("a", Script("A")), "b": FakeBackend("b", Script("B"))}
    gw = fake_gateway(backends, fake_config(["a", "b"]))
    r = routing(await gw.chat(req(params={"floor": 0.3})))
    assert [a["expert"] for a in r["attempts"]] == ["b"] and len(backends["a"].calls) == 0
    assert r["cascade"]["steps"][0]["outcome"] == "skipped"


async def test_verify_fake_backend_yes_accepts_no_escalates() -> None:
    def verifier(says: str) -> Any:
        def script(body: dict[str, Any]) -> Script:
            content = body["messages"][-1]["content"]
            return Script(says) if "Proposed answer" in content else Script("B")
        return script

    gw, b = gateway({"a": Script("B"), "b": verifier("YES"), "c": Script("C")})
    r = routing(await gw.chat(req("verify")))
    assert r["expert"] == "a" and len(b["c"].calls) == 0
    check = b["b"].calls[0]
    assert check["max_tokens"] == 4 and "Proposed answer:\nB" in check["messages"][0]["content"]
    gw, b = gateway({"a": Script("B"), "b": verifier("NO, it is A"), "c": Script("C")})
    r = routing(await gw.chat(req("verify")))
    assert r["expert"] == "c" and r["cascade"]["steps"][0]["verified"] is False


async def test_verify_fake_backend_operator_prompt_is_used() -> None:
    gw, b = gateway({"a": Script("B"), "b": Script("yes"), "c": Script("C")})
    prompt = "Q: {question}\nA: {answer}\nYES or NO?"
    await gw.chat(req("verify", {"prompt": prompt}))
    assert b["b"].calls[0]["messages"][0]["content"].startswith("Q: Which is right?")


async def test_agree_gated_fake_backend_confident_router_skips_the_check() -> None:
    gw, b = gateway({"a": Script("A"), "b": Script("B")})
    r = routing(await gw.chat(req("agree-gated", {"gate": 0.5})))  # b's prior 0.6 >= 0.5
    assert [a["expert"] for a in r["attempts"]] == ["b"]
    assert r["cascade"]["steps"][0]["outcome"] == "skipped"
    assert len(b["a"].calls) == 0 and cascade_count(gw, "skipped") == 1


async def test_cascade_fake_backend_budget_hold_settled_to_the_sum_of_attempts() -> None:
    gw, _ = gateway({"a": Script("A"), "b": Script("B"), "c": Script("C")})
    tenant = Tenant(name="t", budgets={"day_usd": 1.0})
    r = routing(await gw.chat(req(max_tokens=16), tenant))
    usage = await gw.tenancy.guard.ledger.usage("t", tenant.limits)
    assert len(r["attempts"]) == 3
    assert usage[0].spent_usd == pytest.approx(sum(a["cost_usd"] for a in r["attempts"]))
    assert usage[0].reserved_usd == 0


async def test_cascade_fake_backend_tenant_budget_caps_the_escalation() -> None:
    gw, b = gateway({"a": Script("A"), "b": Script("B"), "c": Script("C")})
    request = req(max_tokens=16)
    prompt = max_prompt_tokens(request)
    ex_cost = {e: gw.cfg.expert(e).price.cost(prompt, 16) for e in EXPERTS}
    cap = ex_cost["a"] + ex_cost["b"] + ex_cost["c"] * 0.5  # the cheap tier only
    tenant = Tenant(name="t", request_cap_usd=cap)
    r = routing(await gw.chat(request, tenant))
    assert "capped" in r["cascade"] and len(b["c"].calls) == 0
    assert r["cascade"]["steps"][-1]["outcome"] == "voted"


async def test_agree_gated_fake_backend_gain_rule_escalates_only_when_worth_it() -> None:
    gw, b = gateway({"a": Script("A"), "b": Script("B"), "c": Script("C")})
    r = routing(await gw.chat(req("agree-gated", {"gate": 2, "rule": "gain", "lam": 100})))
    assert len(b["c"].calls) == 0  # escalating is never worth a price weighed 100x
    assert r["cascade"]["steps"][0]["outcome"] == "accepted"
    gw, b = gateway({"a": Script("A"), "b": Script("B"), "c": Script("C")})
    r = routing(await gw.chat(req("agree-gated", {"gate": 2, "rule": "gain", "lam": 0})))
    assert r["expert"] == "c"  # free escalation to a better-rated expert: always


async def test_cascade_fake_backend_client_gone_during_cheap_tier_releases_the_hold() -> None:
    gw, _ = gateway({"a": Script("A", delay_s=5), "b": Script("B", delay_s=5)})
    tenant = Tenant(name="t", budgets={"day_usd": 1.0})
    task = asyncio.create_task(gw.chat(req(), tenant))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    usage = await gw.tenancy.guard.ledger.usage("t", tenant.limits)
    assert usage[0].reserved_usd == 0
    assert all(r.in_flight == 0 for e in EXPERTS for r in gw.pool.replicas(e))


async def test_cascade_fake_backend_strong_failure_returns_best_earlier_answer() -> None:
    gw, _ = gateway({"a": Script("A"), "b": Script("B"), "c": Script(fail_status=500)})
    r = routing(await gw.chat(req()))
    assert r["expert"] == "b"  # the better-rated of the two cheap answers
    assert r["cascade"]["steps"][-1]["outcome"] == "failed"


async def test_cascade_fake_backend_routing_log_has_answers_and_trace(tmp_path: Path) -> None:
    gw, _ = gateway({"a": Script("B"), "b": Script("B")}, tmp_path)
    await gw.chat(req())
    gw.routing_log.flush()
    recs = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and sum(r["final"] for r in recs) == 1
    assert all(r["cascade"]["steps"][0]["outcome"] == "accepted" for r in recs)
    assert {r["note"]["answer"] for r in recs} == {"B"}
    gw.routing_log.close()


async def test_cascade_fake_backend_unknown_answer_kind_is_400() -> None:
    from coe_gateway.errors import RequestError

    with pytest.raises(RequestError) as info:
        ChatRequest({"model": "auto", "messages": QUESTION, "coe": {"answer": "nope"}})
    assert info.value.param == "coe.answer" and "choice" in info.value.message


async def test_cascade_fake_backend_tenant_answer_kind_applies_and_request_overrides() -> None:
    gw, _ = gateway({"a": Script("Paris."), "b": Script("paris")})
    tenant = Tenant(name="t", answer="exact")
    request = ChatRequest({"model": "auto", "messages": QUESTION,
                           "coe": {"strategy": "agree", "params": {"floor": 0.3}}})
    r = routing(await gw.chat(request, tenant))
    assert r["cascade"]["answer_kind"] == "exact" and r["strategy"]["answer"] == "exact"
    assert r["cascade"]["steps"][0]["outcome"] == "accepted"  # "Paris." == "paris"
    r = routing(await gw.chat(req(), tenant))  # the request's coe.answer wins
    assert r["cascade"]["answer_kind"] == "choice"


def test_tenant_unknown_answer_kind_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        Tenant(name="t", answer="nope")
    assert "unknown answer extractor" in str(info.value) and "choice" in str(info.value)
