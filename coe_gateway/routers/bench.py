"""Routing-decision benchmark: latency of one decision (embedding + router + policy) for a
query of a fixed token length, and batched throughput. Figures are printed, never asserted.

Without saved routers, small routers of every trainable kind are fitted on the first records
of the data (static encoder), plus a kNN on MiniLM to show what the transformer encoder
costs (torch on one thread: two threads fight the other processes on a 2-core machine). The
embedding disk cache is switched off so every query is really embedded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from coe_gateway.policies import TradeOff
from coe_gateway.routers.base import Query, Router
from coe_gateway.routers.embedding import ENV_NO_EMBED_CACHE, minilm_path

if TYPE_CHECKING:
    from coe_gateway.records import RecordSet

DEFAULT_KINDS = ("knn", "cluster", "coe", "mlp", "mf", "irt", "profile")
FIT_RECORDS = 2000
MINILM_FIT_RECORDS = 300


def fixed_length_texts(texts: Sequence[str], tokens: int) -> list[str]:
    """Each text cut to its first ``tokens`` MiniLM tokens (texts shorter are dropped)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    out = []
    for enc, text in zip(tok.encode_batch(list(texts), add_special_tokens=False), texts):
        if len(enc.ids) >= tokens:
            out.append(text[: enc.offsets[tokens - 1][1]])
    return out


def time_router(router: Router, texts: Sequence[str], n: int, batch: int) -> dict[str, float]:
    """p50/p99 ms of single decisions and queries/s in batches of ``batch``."""
    policy = TradeOff(lam=1.0)
    costs = np.linspace(1e-4, 1e-3, len(router.experts))  # (E,)
    for t in texts[:5]:  # warm up (lazy loads)
        router.predict([Query(t)])
    lat = []
    for t in texts[:n]:
        t0 = time.perf_counter()
        pred = router.predict([Query(t)])
        policy.rank(pred.quality[0], pred.confidence[0], costs)
        lat.append(time.perf_counter() - t0)
    queries = [Query(t) for t in texts[: max(batch, min(len(texts), 4 * batch))]]
    t0 = time.perf_counter()
    done = 0
    for start in range(0, len(queries), batch):
        part = queries[start:start + batch]
        pred = router.predict(part)
        policy.choose_batch(pred.quality, pred.confidence,
                            np.broadcast_to(costs, pred.quality.shape))
        done += len(part)
    ms = np.array(lat) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "batch_qps": done / (time.perf_counter() - t0)}


class _Trainable(Protocol):
    """A router class with a ``fit`` classmethod (every kind of DEFAULT_KINDS; ``fit`` is each
    trainable kind's own, not part of the Router contract)."""

    def fit(self, train: RecordSet, /, **options: Any) -> Router: ...


def default_routers(data: str, minilm: bool) -> list[tuple[str, Router]]:
    from coe_gateway.eval.datasets import load_records
    from coe_gateway.routers.registry import router_class

    records = load_records([data])
    small = records.subset(np.arange(min(FIT_RECORDS, len(records))))
    static = {"encoder": {"kind": "static"}}
    out = [(kind, cast(_Trainable, router_class(kind)).fit(small, **static))
           for kind in DEFAULT_KINDS]
    if minilm:
        tiny = records.subset(np.arange(min(MINILM_FIT_RECORDS, len(records))))
        out.append(("knn", cast(_Trainable, router_class("knn")).fit(
            tiny, encoder={"threads": 1})))
    return out


def encoder_name(router: Router) -> str:
    spec = getattr(router, "encoder", None) or getattr(getattr(router, "query_model", None),
                                                       "encoder", None)
    return "-" if spec is None else ("static" if spec.kind == "static" else "MiniLM")


def run_bench(router_dirs: Sequence[str], data: str, n: int, batch: int, tokens: int,
              minilm: bool, blas_threads: int = 1) -> list[dict[str, Any]]:
    """One row per router: name, encoder, p50_ms, p99_ms, batch_qps. BLAS runs on
    ``blas_threads`` threads: for routing's small matrices on a 2-core machine shared with
    vLLM workers, one thread is faster than two fighting for the cores."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=blas_threads):
        return _run(router_dirs, data, n, batch, tokens, minilm)


def _run(router_dirs: Sequence[str], data: str, n: int, batch: int, tokens: int,
         minilm: bool) -> list[dict[str, Any]]:
    from coe_gateway.eval.datasets import load_records
    from coe_gateway.routers.registry import load_router

    os.environ[ENV_NO_EMBED_CACHE] = "1"
    records = load_records([data])
    texts = fixed_length_texts(records.prompts[-(n + 4 * batch + 50):], tokens)
    if router_dirs:
        routers = [(d, load_router(d)) for d in router_dirs]
    else:
        routers = default_routers(data, minilm)
    rows = []
    for name, r in routers:
        rows.append({"router": name, "encoder": encoder_name(r),
                     **time_router(r, texts, n, batch)})
    return rows
