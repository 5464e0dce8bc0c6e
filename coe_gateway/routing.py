"""The routing step of the pipeline: which experts may answer, what the router predicts for
them, and the policy's ranking — the :class:`Decision` every response reports.

The gateway's model names: an expert's name (answered by that expert, no routing),
``auto`` (the configured default router), ``router:<name>`` (that router).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from coe_gateway.config import ExpertConfig, GatewayConfig, RouterSpec
from coe_gateway.errors import (
    BudgetExceededError,
    ContextLengthError,
    NoEligibleExpertError,
    UnknownModelError,
    UpstreamUnavailableError,
)
from coe_gateway.policies import BudgetState, Policy
from coe_gateway.protocol import ChatRequest, estimate_prompt_tokens
from coe_gateway.routers.base import Query, Router
from coe_gateway.routers.registry import build_router

if TYPE_CHECKING:
    from coe_gateway.vision.images import LoadedImage
    from coe_gateway.vision.step import FeatureStep

AUTO = "auto"
ROUTER_PREFIX = "router:"


class RouterSet:
    """The configured routers by name, each built on first use (and at ``warm_up``)."""

    def __init__(self, specs: Sequence[RouterSpec], experts: Sequence[str], default: str) -> None:
        self.specs = {s.name: s for s in specs}
        self.experts = list(experts)
        self.default = default
        self._built: dict[str, Router] = {}

    @property
    def model_names(self) -> list[str]:
        return [AUTO] + [f"{ROUTER_PREFIX}{n}" for n in self.specs]

    def get(self, name: str) -> Router:
        if name not in self._built:
            s = self.specs[name]
            self._built[name] = build_router(s.kind, self.experts, s.path, s.options)
        return self._built[name]

    def built(self) -> list[Router]:
        """The routers built so far (all of them after :meth:`warm_up`)."""
        return list(self._built.values())

    def warm_up(self) -> None:
        """Build every router and run one prediction (loads encoders and weights now)."""
        for name in self.specs:
            self.get(name).predict([Query(text="warm-up")])

    def resolve(self, model: str) -> str | None:
        """The router name for a model name, None for an expert (UnknownModelError if neither)."""
        if model == AUTO:
            return self.default
        if model.startswith(ROUTER_PREFIX) and model[len(ROUTER_PREFIX):] in self.specs:
            return model[len(ROUTER_PREFIX):]
        if model in self.experts:
            return None
        raise UnknownModelError(
            f"The model '{model}' does not exist. Available: "
            f"{', '.join(self.model_names + self.experts)}", param="model")


@dataclass
class Decision:
    """Which expert answers and why."""

    ranking: list[str]
    router: str | None
    policy: dict[str, Any]
    predicted: dict[str, dict[str, float]] = field(default_factory=dict)
    est_costs: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    routing_s: float = 0.0
    #: seconds the image features for the router took (None: it read none)
    features_s: float | None = None

    @property
    def expert(self) -> str:
        return self.ranking[0]

    def reason_for(self, answered_by: str) -> str:
        """Why ``answered_by`` answered (the decision's reason, or the fallback)."""
        if answered_by == self.expert:
            return self.reason
        return f"{self.reason}; fell back from {self.expert}"

    def extension(self, answered_by: str) -> dict[str, Any]:
        """The ``coe_routing`` field of a response."""
        return {
            "expert": answered_by,
            "router": self.router,
            "policy": self.policy,
            "reason": self.reason_for(answered_by),
            "ranking": self.ranking,
            "predicted": self.predicted,
            "estimated_cost_usd": self.est_costs,
        }


def expected_output_tokens(expert: ExpertConfig, request: ChatRequest) -> float:
    cap = request.output_budget
    return float(min(cap, expert.mean_output_tokens) if cap else expert.mean_output_tokens)


def max_output_tokens(expert: ExpertConfig, request: ChatRequest,
                      prompt_tokens: int) -> int:
    """The most tokens the expert may generate for this request (what a budget reserves)."""
    room = max(expert.context_length - prompt_tokens, 0)
    cap = request.output_budget
    return min(cap, room) if cap else room


def eligible_experts(
    cfg: GatewayConfig, request: ChatRequest, prompt_tokens: int,
    allowed: Sequence[str] | None = None,
) -> list[ExpertConfig]:
    """Experts with the capabilities and context this request needs: a 400 naming what is
    missing when no expert the caller may use offers it (an image needs ``vision``, ``tools``
    needs ``tools``), or when the prompt fits no eligible expert's context."""
    pool = cfg.experts if allowed is None else [cfg.expert(e) for e in allowed
                                                if e in cfg.experts_by_name]
    capable = [e for e in pool if "text" in e.capabilities]
    if not capable:
        raise NoEligibleExpertError("No expert you may use answers text requests.",
                                    param="model")
    for need, param in (("vision", "messages") if request.has_image() else (None, None),
                        ("tools", "tools") if request.tools else (None, None)):
        if need is None:
            continue
        capable = [e for e in capable if need in e.capabilities]
        if not capable:
            raise NoEligibleExpertError(
                f"This request needs the capability '{need}' ("
                f"{'an image part' if need == 'vision' else 'tools'}), which no expert you "
                f"may use offers; experts: {', '.join(e.name for e in pool) or 'none'}.",
                param=param)
    budget = request.output_budget or 1
    fits = [e for e in capable if prompt_tokens + budget <= e.context_length]
    if not fits:
        longest = max(e.context_length for e in capable)
        raise ContextLengthError(
            f"This request needs about {prompt_tokens} prompt tokens plus "
            f"{budget} for the answer, more than the largest context "
            f"of any eligible expert ({longest} tokens).", param="messages")
    return fits


def _predict(router: Router, query: Query, experts: list[ExpertConfig]) -> tuple[np.ndarray, np.ndarray]:
    pred = router.predict([query])
    if len(pred.experts) == len(experts) and all(
            a == e.name for a, e in zip(pred.experts, experts)):  # the usual case: same order
        return pred.quality[0], pred.confidence[0]
    known = {e: i for i, e in enumerate(pred.experts)}
    q = np.empty(len(experts))
    c = np.empty(len(experts))
    for j, e in enumerate(experts):
        if e.name in known:
            q[j], c[j] = pred.quality[0, known[e.name]], pred.confidence[0, known[e.name]]
        else:  # an expert the router never saw: its configured prior, no confidence
            q[j], c[j] = (e.quality_prior if e.quality_prior is not None else 0.5), 0.0
    return q, c


async def route(
    cfg: GatewayConfig, routers: RouterSet, policy: Policy, request: ChatRequest,
    query: Query, available: set[str], budget: BudgetState | None = None,
    allowed: Sequence[str] | None = None, images: Sequence[LoadedImage] = (),
    features: FeatureStep | None = None,
) -> Decision:
    """The decision for one request: eligibility, image features (for a router that reads
    them), prediction, policy ranking."""
    start = time.perf_counter()
    router_name = routers.resolve(request.model)
    prompt_tokens = estimate_prompt_tokens(request)
    if router_name is None:  # an expert asked for by name
        expert = cfg.expert(request.model)
        eligible_experts(cfg, request, prompt_tokens, allowed=[expert.name])
        if expert.name not in available:
            raise UpstreamUnavailableError(f"expert {expert.name} has no healthy replica right now")
        cost = expert.price.cost(prompt_tokens, expected_output_tokens(expert, request))
        return Decision([expert.name], None, {"kind": "requested"}, est_costs={expert.name: cost},
                        reason="the caller asked for this expert",
                        routing_s=time.perf_counter() - start)
    experts = eligible_experts(cfg, request, prompt_tokens, allowed)
    router = routers.get(router_name)
    features_s = None
    if features is not None and images:
        query, features_s = await features.attach(router, query, images)
    if router.cheap:
        q, c = _predict(router, query, experts)
    else:
        q, c = await asyncio.to_thread(_predict, router, query, experts)
    costs = np.array([e.price.cost(prompt_tokens, expected_output_tokens(e, request))
                      for e in experts])
    order = policy.rank(q, c, costs, budget)
    ranking = [experts[i].name for i in order if experts[i].name in available]
    if not ranking and not order:  # the budget state excluded every expert
        raise BudgetExceededError(
            "no eligible expert fits the budget for this request", limit="unknown",
            estimated_cost_usd={e.name: float(costs[j]) for j, e in enumerate(experts)})
    if not ranking:
        raise UpstreamUnavailableError("no eligible expert has a healthy replica right now")
    ql, cl, costl = q.tolist(), c.tolist(), costs.tolist()
    return Decision(
        ranking=ranking, router=router_name, policy=policy.describe(),
        predicted={e.name: {"quality": round(ql[j], 4), "confidence": round(cl[j], 4)}
                   for j, e in enumerate(experts)},
        est_costs={e.name: costl[j] for j, e in enumerate(experts)},
        reason=f"router {router_name} + policy {policy.kind}",
        routing_s=time.perf_counter() - start, features_s=features_s,
    )
