"""Strategies (see :mod:`.base`). Importing the package registers the built-in kinds:
``fallback`` and ``single`` (:mod:`.fallback`)."""

from coe_gateway.strategies import fallback as _fallback  # noqa: F401  (registers kinds)
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
