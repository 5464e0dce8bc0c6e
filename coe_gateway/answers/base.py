"""Answer extractors: a model's reply text -> a canonical *answer key*.

An answer-aware cascade asks several experts the same question and compares their final
answers: two replies agree iff their keys are equal, and a reply the extractor cannot read
has the key ``None`` (it agrees with nothing). Kinds are entries of :data:`EXTRACTORS`,
registered with :func:`register_extractor` (one module per kind, imported by the package's
``__init__``); :func:`build_extractor` makes one from a kind and its parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from coe_gateway.errors import RequestError

PARAM = "coe.answer"
"""The request field that names an extractor (what a RequestError points at)."""


class Extractor(ABC):
    """Reads the final answer out of a reply."""

    kind: ClassVar[str]

    @abstractmethod
    def extract(self, text: str) -> str | None:
        """The canonical key of the answer in ``text``, or None when none can be read."""

    def keys(self, texts: Sequence[str | None]) -> list[str | None]:
        """Keys of several answers to the same question; equal keys = same answer.

        A missing reply (None) has the key None. Extractors that compare answers with each
        other rather than read each alone (``embedding``) override this."""
        return [self.extract(t) if t is not None else None for t in texts]

    def describe(self) -> dict[str, Any]:
        """The kind and its parameters (for traces and ``describe`` views)."""
        return {"kind": self.kind}


E = TypeVar("E", bound=Extractor)

EXTRACTORS: dict[str, type[Extractor]] = {}
"""Extractor kind -> class (called with the kind's params as keyword arguments)."""


def register_extractor(kind: str) -> Callable[[type[E]], type[E]]:
    """Class decorator: register an extractor kind."""

    def add(cls: type[E]) -> type[E]:
        cls.kind = kind
        EXTRACTORS[kind] = cls
        return cls

    return add


def build_extractor(kind: str, params: dict[str, Any] | None = None) -> Extractor:
    """An extractor of ``kind`` (RequestError naming the known kinds when there is none, or
    the problem when ``params`` do not fit the kind)."""
    try:
        cls = EXTRACTORS[kind]
    except KeyError:
        raise RequestError(f"Unknown answer extractor '{kind}'; known: "
                           f"{', '.join(sorted(EXTRACTORS))}", param=PARAM) from None
    try:
        return cls(**(params or {}))
    except (TypeError, ValueError) as exc:
        raise RequestError(f"Invalid parameters for answer extractor '{kind}': {exc}",
                           param=PARAM) from None
