"""``fallback`` (the default) and ``single``: the policy's first expert answers; on an
upstream failure before the first byte ``fallback`` moves to the next expert of the ranking,
at most ``fallbacks`` times (``routing.fallbacks``); ``single`` never does. Both step over an
expert whose maximum cost the budget cannot hold (that is not a failure of the expert)."""

from __future__ import annotations

from typing import Any

from coe_gateway.errors import BudgetExceededError, GatewayError, UpstreamError
from coe_gateway.strategies.attempt import Outcome
from coe_gateway.strategies.base import (
    Exchange,
    Strategy,
    accept,
    fallback_step,
    register_strategy,
)


@register_strategy("fallback")
class Fallback(Strategy):
    def __init__(self, fallbacks: int = 1, **params: Any) -> None:
        if params:
            raise TypeError(f"unexpected parameters {sorted(params)}")
        self.fallbacks = fallbacks

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "fallbacks": self.fallbacks}

    async def serve(self, ex: Exchange) -> Outcome:
        tries = self.fallbacks if ex.decision.router else 0
        failure: GatewayError | None = None
        failed: str | None = None
        for expert in ex.decision.ranking:
            if failed is not None:
                fallback_step(ex, failed, expert)
            try:
                return accept(await ex.call(expert))
            except BudgetExceededError as exc:
                failure = failure or exc
            except UpstreamError as exc:
                failure, failed = exc, expert
                if tries == 0:
                    break
                tries -= 1
        assert failure is not None, "a decision always ranks at least one expert"
        raise failure


@register_strategy("single")
class Single(Fallback):
    def __init__(self, fallbacks: int = 0, **params: Any) -> None:
        super().__init__(0, **params)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}
