"""Strategies offline: the gateway's own strategy objects, run over recorded answers.

For each test query a :class:`RecordExchange` stands in for the live
:class:`~coe_gateway.strategies.base.Exchange`: an attempt of expert ``m`` "answers" with the
record's ``answers[m]`` (the option letter, the number, or the whole response, as the data
set recorded it) and costs the query's realised cost with ``m``; nothing is reserved. The
decision is the router's prediction for the query (ranking by predicted quality, the
estimated costs), exactly what the live gateway hands a strategy. The query's cost is the
sum of the attempts the strategy made, its quality the score of the expert whose answer it
returned.

A verifier (``verify`` strategies) cannot be replayed from records: offline, a verifier
says YES exactly when its own recorded answer equals the proposed one (a verifier that
checks by solving), and costs its full recorded answer (an upper bound of a short check).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coe_gateway.answers import Extractor
from coe_gateway.budget import ANONYMOUS
from coe_gateway.eval import metrics
from coe_gateway.eval.sweep import Arrays, Point
from coe_gateway.metrics import GatewayMetrics
from coe_gateway.protocol import ChatRequest
from coe_gateway.routing import Decision
from coe_gateway.sse import Body
from coe_gateway.strategies import Attempt, Exchange, Outcome, Strategy, build_strategy
from coe_gateway.strategies.cascade import Cascade


class RecordExchange(Exchange):
    """One recorded query served by a strategy: calls answer from the record."""

    def __init__(self, decision: Decision, request: ChatRequest, answers: dict[str, str | None],
                 costs: dict[str, float], extractor: Extractor | None,
                 metrics_: GatewayMetrics) -> None:
        self.request, self.decision, self.tenant = request, decision, ANONYMOUS
        self.metrics = metrics_
        self.answers, self.costs, self.extractor = answers, costs, extractor
        self.attempts: list[Attempt] = []
        self.trace: dict[str, Any] = {}
        self.hold = None
        self._admitted = True

    def max_cost(self, expert: str, output_tokens: int | None = None) -> float:
        return self.decision.est_costs.get(expert, 0.0)

    def payload(self, expert: str, stream: bool | None = None,
                messages: list[dict[str, Any]] | None = None, **overrides: Any) -> bytes:
        return b""

    def fresh_payload(self, expert: str, messages: list[dict[str, Any]],
                      **fields: Any) -> bytes:
        return b""

    async def hold_plan(self, amount_usd: float) -> None:
        return None

    async def close(self) -> None:
        return None

    async def call(self, expert: str, *, stream: bool | None = None,
                   payload: bytes | None = None, purpose: str = "answer",
                   max_cost_usd: float | None = None, timeout_s: float | None = None,
                   note: dict[str, Any] | None = None) -> Outcome:
        a = Attempt(len(self.attempts), expert, False, purpose)
        a.note.update(note or {})
        self.attempts.append(a)
        text = self.answers.get(expert)
        if purpose == "verify":
            text = "YES" if self._agrees(expert, a.note.get("checks")) else "NO"
        a.status, a.done, a.cost_usd = 200, True, self.costs.get(expert, 0.0)
        body = Body(b"", {"choices": [{"index": 0, "message": {
            "role": "assistant", "content": text or ""}, "finish_reason": "stop"}]})
        return Outcome(a, body=body)

    def _agrees(self, verifier: str, proposed: Any) -> bool:
        if proposed is None or self.extractor is None:
            return False
        return bool(self.extractor.keys([self.answers.get(verifier)])[0] == proposed)


@dataclass
class Served:
    """A strategy's choices over the test queries: (N,) final expert column, (N,) cost."""

    choice: np.ndarray
    cost: np.ndarray
    attempts: np.ndarray


def _decision(arrays: Arrays, n: int, router: str) -> Decision:
    q, c, est = arrays.quality[n], arrays.confidence[n], arrays.est[n]
    order = np.lexsort((est, -q))
    experts = arrays.experts
    return Decision(
        ranking=[experts[j] for j in order], router=router, policy={"kind": "offline"},
        predicted={e: {"quality": float(q[j]), "confidence": float(c[j])}
                   for j, e in enumerate(experts)},
        est_costs={e: float(est[j]) for j, e in enumerate(experts)})


async def _serve_all(strategy: Strategy, arrays: Arrays, prompts: Sequence[str],
                     answers: Sequence[dict[str, str | None]], router: str) -> Served:
    experts = arrays.experts
    col = {e: j for j, e in enumerate(experts)}
    real = np.nan_to_num(arrays.real, nan=0.0)
    registry = GatewayMetrics()
    n = len(prompts)
    choice = np.full(n, -1, dtype=np.int64)
    cost = np.zeros(n)
    tries = np.zeros(n, dtype=np.int64)
    for i in range(n):
        request = ChatRequest.of(model="auto", messages=[{"role": "user",
                                                          "content": prompts[i]}])
        ex = RecordExchange(_decision(arrays, i, router), request, answers[i],
                            {e: float(real[i, j]) for j, e in enumerate(experts)}, None,
                            registry)
        if isinstance(strategy, Cascade):
            ex.extractor = strategy.extractor_of(strategy.answer_kind(ex))
        outcome = await strategy.serve(ex)
        choice[i] = col[outcome.attempt.expert]
        cost[i] = ex.spent_usd
        tries[i] = len(ex.attempts)
    return Served(choice, cost, tries)


def serve_records(strategy: Strategy, arrays: Arrays, prompts: Sequence[str],
                  answers: Sequence[dict[str, str | None]], router: str) -> Served:
    """Run ``strategy`` over every test query (one event loop for them all)."""
    return asyncio.run(_serve_all(strategy, arrays, prompts, answers, router))


def strategy_point(kind: str, params: dict[str, Any], param: str, value: float,
                   arrays: Arrays, prompts: Sequence[str],
                   answers: Sequence[dict[str, str | None]], router: str) -> Point:
    """The operating point of strategy ``kind`` with ``params`` and ``param = value``."""
    strategy = build_strategy(kind, {**params, param: _typed(param, value)})
    served = serve_records(strategy, arrays, prompts, answers, router)
    counts = np.bincount(served.choice[served.choice >= 0], minlength=len(arrays.experts))
    shares = {e: float(c) / len(served.choice) for e, c in zip(arrays.experts, counts)}
    return Point(float(value), metrics.accuracy(arrays.scores, served.choice),
                 float(served.cost.mean()), shares)


def train_tiers(experts: Sequence[str], quality: np.ndarray, est: np.ndarray,
                params: dict[str, Any]) -> list[list[str]]:
    """``tiers: train`` in a suite: the tiers :func:`coe_gateway.strategies.tiers.plan`
    derives from the *training split's* mean quality and mean estimated cost of every expert
    (the prior's view, the same for every query), so that the per-query router only weighs
    and gates the answers. quality, est: (E,)."""
    from coe_gateway.strategies.tiers import plan

    decision = Decision(
        ranking=[experts[j] for j in np.lexsort((est, -quality))], router="prior",
        policy={"kind": "offline"},
        predicted={e: {"quality": float(q)} for e, q in zip(experts, quality)},
        est_costs={e: float(c) for e, c in zip(experts, est)})
    tiers = plan(decision, k=int(params.get("k", 2)), floor=float(params.get("floor", 0.75)),
                 extra=int(params.get("extra", 0)), by="cost")
    return tiers.view()


def _typed(param: str, value: float) -> Any:
    """Integer parameters (``k``, ``m``, ``extra``) as ints."""
    return int(value) if param in ("k", "m", "extra", "options") else value


def sweep_strategy(kind: str, params: dict[str, Any], param: str, values: Sequence[float],
                   arrays: Arrays, prompts: Sequence[str],
                   answers: Sequence[dict[str, str | None]], router: str,
                   advance: Callable[[int], None] | None = None) -> list[Point]:
    points = []
    for v in values:
        points.append(strategy_point(kind, params, param, v, arrays, prompts, answers,
                                     router))
        if advance is not None:
            advance(1)
    return points
