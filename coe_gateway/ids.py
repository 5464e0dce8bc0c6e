"""Unique ids for reservations and requests, without a system call each.

An :class:`IdSource` is a random 64-bit prefix drawn once (``os.urandom``) and a counter:
ids are unique across processes and replicas (the prefixes differ) and within one (the
counter), and cost a string format, not a ``getrandom`` call. They name things; they are
not secrets.
"""

from __future__ import annotations

import itertools
import os


class IdSource:
    """Callable: the next id, 32 hex digits."""

    __slots__ = ("_prefix", "_count")

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"
