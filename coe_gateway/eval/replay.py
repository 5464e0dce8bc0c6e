"""Replaying the gateway's routing log: what live traffic did and how good the router's
predictions were.

The routing log is JSONL, one object per routing decision::

    {"ts": 1717171717.2, "request_id": "r-1", "tenant": "acme", "query": "...",
     "category": null, "router": "knn", "policy": {"kind": "trade-off", "lam": 1.0},
     "expert": "smollm2", "ranking": ["smollm2", "gemma3"],
     "predicted": {"smollm2": {"quality": 0.61, "confidence": 0.8}, ...},
     "cost_usd": 0.00002, "latency_s": 0.41, "prompt_tokens": 12, "completion_tokens": 40,
     "outcome": 1.0, "status": 200}

``outcome`` is the answer's quality (0..1) where it became known (a grader, user feedback),
else null. Required: ts, request_id, query, expert, cost_usd, latency_s, status (``router``
is null for a request that named its expert);
the rest may be left out. Unknown keys are kept and ignored. A malformed line raises
:class:`~coe_gateway.records.RecordError` naming the file, the line and the field.

:func:`analyse` gives per-expert shares, cost and latency percentiles, per router / policy /
tenant counts, how often the first choice answered, and, where outcomes are known, predicted
versus observed quality (calibration: mean gap, Brier score, expected calibration error).
:func:`to_records` turns decisions with an outcome into routing records (one scored model
per query) for training.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coe_gateway.records import RecordError, iter_jsonl

CALIBRATION_BINS = 10


class PredictedQuality(BaseModel):
    model_config = ConfigDict(extra="allow")
    quality: float = Field(ge=0, le=1)
    confidence: float = Field(1.0, ge=0, le=1)


class Decision(BaseModel):
    """One line of the routing log."""

    model_config = ConfigDict(extra="allow")
    ts: float
    request_id: str
    tenant: str | None = None
    query: str
    category: str | None = None
    router: str | None = None
    policy: dict[str, Any] = Field(default_factory=dict)
    expert: str
    ranking: list[str] = Field(default_factory=list)
    predicted: dict[str, PredictedQuality] = Field(default_factory=dict)
    cost_usd: float = Field(ge=0)
    latency_s: float = Field(ge=0)
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    outcome: float | None = Field(None, ge=0, le=1)
    status: int


def _field(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def load_log(path: str | Path) -> list[Decision]:
    """Every decision of a routing log (JSONL, gzipped or not), validated line by line.

    The gateway logs one record per attempt; a request's decision is its ``final`` record
    (the attempt whose answer the caller got, or the last of a failed request). Records of
    the other attempts (``final: false``: failed before a fallback, rejected by a cascade)
    are validated and left out here; logs written before attempts existed have no
    ``final`` field and every line is a decision."""
    out = []
    for n, obj in iter_jsonl(path):
        try:
            decision = Decision.model_validate(obj)
            if isinstance(obj, dict) and obj.get("final") is False:
                continue
            out.append(decision)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise RecordError(str(path), n, _field(err["loc"]), err["msg"]) from exc
    if not out:
        raise RecordError(str(path), 0, "<file>", "no decisions")
    return out


def percentiles(values: Iterable[float]) -> dict[str, float | None]:
    """p50, p90, p99 (linear interpolation) of ``values``; None when empty."""
    v = np.asarray(list(values), dtype=float)
    if len(v) == 0:
        return {"p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99)}


def calibration(predicted: Sequence[float], observed: Sequence[float],
                bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Predicted quality of the answering expert against the observed outcome.

    gap = mean(predicted) - mean(observed) (> 0: the router is over-confident);
    Brier = mean((predicted - observed)^2); ECE (Naeini et al. 2015) = sum over equal-width
    bins of predicted quality of (bin size / n) * |mean predicted - mean observed|.
    """
    p = np.asarray(predicted, dtype=float)
    o = np.asarray(observed, dtype=float)
    if len(p) == 0:
        return {"n": 0}
    which = np.minimum((p * bins).astype(int), bins - 1)  # (n,) bin of each prediction
    table, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            gap = abs(p[mask].mean() - o[mask].mean())
            ece += mask.mean() * gap
            table.append({"bin": [b / bins, (b + 1) / bins], "n": int(mask.sum()),
                          "predicted": float(p[mask].mean()), "observed": float(o[mask].mean())})
    return {"n": len(p), "mean_predicted": float(p.mean()), "mean_observed": float(o.mean()),
            "gap": float(p.mean() - o.mean()), "brier": float(((p - o) ** 2).mean()),
            "ece": float(ece), "bins": table}


def _chosen_prediction(d: Decision) -> float | None:
    pred = d.predicted.get(d.expert)
    return None if pred is None else pred.quality


def _expert_stats(ds: list[Decision], total: int) -> dict[str, Any]:
    known = [(q, d.outcome) for d in ds
             if d.outcome is not None and (q := _chosen_prediction(d)) is not None]
    return {
        "count": len(ds), "share": len(ds) / total,
        "cost_usd": float(sum(d.cost_usd for d in ds)),
        "mean_cost_usd": float(np.mean([d.cost_usd for d in ds])),
        "latency_s": percentiles(d.latency_s for d in ds),
        "errors": sum(d.status >= 400 for d in ds),
        "outcomes": sum(d.outcome is not None for d in ds),
        "mean_outcome": _mean([d.outcome for d in ds if d.outcome is not None]),
        "calibration": calibration([q for q, _ in known], [o for _, o in known]),
    }


def _mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def analyse(decisions: Sequence[Decision]) -> dict[str, Any]:
    """The summary of a routing log (JSON-ready)."""
    total = len(decisions)
    by_expert: dict[str, list[Decision]] = defaultdict(list)
    for d in decisions:
        by_expert[d.expert].append(d)
    known = [(q, d.outcome) for d in decisions
             if d.outcome is not None and (q := _chosen_prediction(d)) is not None]
    ranked = [d for d in decisions if d.ranking]
    return {
        "decisions": total,
        "span_s": float(max(d.ts for d in decisions) - min(d.ts for d in decisions)),
        "cost_usd": float(sum(d.cost_usd for d in decisions)),
        "mean_cost_usd": float(np.mean([d.cost_usd for d in decisions])),
        "latency_s": percentiles(d.latency_s for d in decisions),
        "tokens": {"prompt": sum(d.prompt_tokens for d in decisions),
                   "completion": sum(d.completion_tokens for d in decisions)},
        "errors": sum(d.status >= 400 for d in decisions),
        "first_choice_rate": _mean([float(d.ranking[0] == d.expert) for d in ranked]),
        "mean_outcome": _mean([d.outcome for d in decisions if d.outcome is not None]),
        "experts": {e: _expert_stats(ds, total) for e, ds in sorted(by_expert.items())},
        "routers": dict(Counter(d.router for d in decisions)),
        "policies": dict(Counter(str(d.policy.get("kind", "?")) for d in decisions)),
        "tenants": dict(Counter(d.tenant or "-" for d in decisions)),
        "calibration": calibration([q for q, _ in known], [o for _, o in known]),
    }


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:.0f}"


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def to_markdown(summary: dict[str, Any], source: str) -> str:
    """A readable report of :func:`analyse`'s summary."""
    s, lat, cal = summary, summary["latency_s"], summary["calibration"]
    lines = [
        f"# Routing log replay: {source}", "",
        f"- {s['decisions']} decisions over {s['span_s']:.0f} s, {s['errors']} errors; "
        f"total cost {s['cost_usd']:.6f} USD ({s['mean_cost_usd']:.3g} USD a request).",
        f"- Latency p50 / p90 / p99: {_ms(lat['p50'])} / {_ms(lat['p90'])} / "
        f"{_ms(lat['p99'])} ms. First choice answered: {_f(s['first_choice_rate'])}.",
        f"- Routers: {s['routers']}; policies: {s['policies']}; tenants: {s['tenants']}.", "",
        "| expert | share | requests | cost USD | latency p50 / p99 ms | errors | outcomes | "
        "mean outcome | mean predicted | ECE |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e, v in s["experts"].items():
        c = v["calibration"]
        lines.append(
            f"| {e} | {v['share']:.1%} | {v['count']} | {v['cost_usd']:.6f} | "
            f"{_ms(v['latency_s']['p50'])} / {_ms(v['latency_s']['p99'])} | {v['errors']} | "
            f"{v['outcomes']} | {_f(v['mean_outcome'])} | {_f(c.get('mean_predicted'))} | "
            f"{_f(c.get('ece'))} |")
    lines += ["", "## Calibration (answering expert's predicted quality vs outcome)", ""]
    if cal["n"] == 0:
        lines.append("No decision has both an outcome and a prediction for its expert.")
    else:
        lines += [f"n = {cal['n']}: mean predicted {cal['mean_predicted']:.3f}, observed "
                  f"{cal['mean_observed']:.3f} (gap {cal['gap']:+.3f}), Brier "
                  f"{cal['brier']:.3f}, ECE {cal['ece']:.3f}.", "",
                  "| predicted bin | n | mean predicted | mean observed |",
                  "| --- | ---: | ---: | ---: |"]
        lines += [f"| {b['bin'][0]:.1f}-{b['bin'][1]:.1f} | {b['n']} | {b['predicted']:.3f} | "
                  f"{b['observed']:.3f} |" for b in cal["bins"]]
    return "\n".join(lines) + "\n"


def to_records(decisions: Sequence[Decision]) -> list[dict[str, Any]]:
    """Routing records (the shared/data format) from decisions with a known outcome: the
    answering expert's outcome as its score, the real cost as its cost."""
    return [
        {"id": f"replay/{d.request_id}", "prompt": d.query, "category": d.category,
         "scores": {d.expert: d.outcome}, "costs_usd": {d.expert: d.cost_usd},
         "meta": {"ts": d.ts, "tenant": d.tenant, "router": d.router,
                  "completion_tokens": d.completion_tokens, "latency_s": d.latency_s}}
        for d in decisions if d.outcome is not None and d.status < 400
    ]


def write_replay(path: str | Path, out_dir: str | Path,
                 records: str | Path | None = None) -> dict[str, Any]:
    """Analyse a log; write ``replay.json`` and ``replay.md`` (and records JSONL if asked)."""
    decisions = load_log(path)
    summary = analyse(decisions)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out / "replay.md").write_text(to_markdown(summary, Path(path).name), encoding="utf-8")
    if records is not None:
        rows = to_records(decisions)
        Path(records).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return summary
