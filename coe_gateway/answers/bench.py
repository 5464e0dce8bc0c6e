"""A micro-benchmark of answer checking: extract the keys of three answers and tally them.

:func:`bench_check` times that per extractor kind (``embedding`` aside: it runs an encoder)
over realistic short replies and reports the p50 / p99 in microseconds, for a CLI to print.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType

from coe_gateway.answers.base import build_extractor
from coe_gateway.answers.vote import tally

SAMPLES: Mapping[str, tuple[str, str, str]] = MappingProxyType({
    "choice": ("The answer is (C).", "Let me think. Option B is tempting, but the answer is C "
               "because the others are wrong.", "**B**"),
    "number": ("She sold 48 + 24 = 72 clips.\n#### 72", "48 / 2 = 24 in May, so 48 + 24 = 72.",
               "The answer is $1,200.50"),
    "code": ("Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\nDone.",
             "```py\ndef add(a, b):\n    return a + b   \n\n```",
             "```python\ndef add(x, y):\n    return x + y\n```"),
    "exact": ("Paris.", "\"paris\"", "The capital is Paris."),
    "json": ('{"answer": 42, "why": "6 * 7"}', 'Sure:\n```json\n{"answer": 42.0}\n```',
             'I think {"answer": 41} is right.'),
})
PARAMS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"json": MappingProxyType({"field": "answer"})})


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def time_kind(kind: str, n: int) -> list[float]:
    """Sorted microseconds of ``n`` checks of :data:`SAMPLES` [kind]."""
    extractor = build_extractor(kind, dict(PARAMS.get(kind, {})))
    texts = list(SAMPLES[kind])
    clock = time.perf_counter_ns
    out = []
    for _ in range(n):
        start = clock()
        tally(extractor.keys(texts))
        out.append((clock() - start) / 1000.0)
    return sorted(out)


def bench_check(n: int = 10000) -> dict[str, float]:
    """``{"<kind>.p50_us": ..., "<kind>.p99_us": ...}`` for every kind of :data:`SAMPLES`."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    result: dict[str, float] = {}
    for kind in SAMPLES:
        times = time_kind(kind, n)
        result[f"{kind}.p50_us"] = _percentile(times, 0.50)
        result[f"{kind}.p99_us"] = _percentile(times, 0.99)
    return result
