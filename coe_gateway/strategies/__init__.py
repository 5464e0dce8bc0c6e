"""Strategies (see :mod:`.base`). Importing the package registers the built-in kinds:
``fallback`` and ``single`` (:mod:`.fallback`), the answer-aware cascades ``agree`` and
``agree-gated`` (:mod:`.agree`), ``verify`` and ``verify-gated`` (:mod:`.verify`)."""

from coe_gateway.strategies import agree as _agree  # noqa: F401  (registers kinds)
from coe_gateway.strategies import fallback as _fallback  # noqa: F401
from coe_gateway.strategies import verify as _verify  # noqa: F401
from coe_gateway.strategies.attempt import Attempt, Outcome
from coe_gateway.strategies.base import (
    STRATEGIES,
    Exchange,
    Strategy,
    build_strategy,
    register_strategy,
)

__all__ = ["STRATEGIES", "Attempt", "Exchange", "Outcome", "Strategy", "build_strategy",
           "register_strategy"]
