"""LLM profiles (after RouteProfile, Xu et al. 2026): a structured summary of one model's
interaction history, readable, and enough for a profile-conditioned router
(:mod:`coe_gateway.routers.profile`) to route to that model without retraining.

A profile is organised as the RouteProfile paper's *structured* form, at query level: the
model's results are grouped by category, by query cluster (k-means of query embeddings) and by
predicted-difficulty band, each group with its quality, its count, its mean cost and latency
where known, and links to the queries it came from (their ids). The clusters and bands refer
to a *frame* (the profile router's query model and centroids, named by ``frame``), so two
profiles in one frame are comparable group by group.

File format (JSON, one file per model, ``profiles/<data set>/<model>.json``)::

    {"schema": "coe-gateway/profile/v1", "model": "...", "frame": "...",
     "source": {"records": "...", "n_records": 421, "fraction": 0.05, "seed": 0},
     "facts": {"active_params_b": 8.0, "price_usd_per_mtok": null},
     "overall": {"quality": 0.64, "n": 421, "cost_usd": 4.6e-05, "latency_s": null},
     "categories": {"math": {"quality": 0.61, "n": 47, "cost_usd": ..., "query_ids": [...]}},
     "clusters": [{"quality": ..., "n": ..., "top_category": "law", "query_ids": [...]}, ...],
     "difficulty_bands": [{"low": 0.0, "high": 0.2, "quality": ..., "n": ...}, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "coe-gateway/profile/v1"
MAX_IDS = 8


@dataclass
class Group:
    """One group of a model's results: mean quality over n results, and where they came from."""

    quality: float
    n: int
    cost_usd: float | None = None
    latency_s: float | None = None
    query_ids: list[str] = field(default_factory=list)
    top_category: str | None = None
    low: float | None = None
    high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != []}


@dataclass
class Profile:
    model: str
    frame: str
    overall: Group
    categories: dict[str, Group]
    clusters: list[Group]
    difficulty_bands: list[Group]
    source: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "model": self.model, "frame": self.frame,
                "source": self.source, "facts": self.facts, "overall": self.overall.to_dict(),
                "categories": {k: g.to_dict() for k, g in self.categories.items()},
                "clusters": [g.to_dict() for g in self.clusters],
                "difficulty_bands": [g.to_dict() for g in self.difficulty_bands]}

    def write(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return p

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "<profile>") -> Profile:
        """Validate a profile (ValueError naming the file and the field)."""
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{where}: schema: expected {SCHEMA!r}, got {data.get('schema')!r}")
        for key in ("model", "frame"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"{where}: {key}: missing or not a string")

        def group(value: Any, name: str) -> Group:
            if not isinstance(value, Mapping):
                raise ValueError(f"{where}: {name}: must be an object")
            q, n = value.get("quality"), value.get("n")
            if not isinstance(q, (int, float)) or not 0.0 <= q <= 1.0:
                raise ValueError(f"{where}: {name}.quality: must be a number in 0..1, got {q!r}")
            if not isinstance(n, int) or n < 0:
                raise ValueError(f"{where}: {name}.n: must be a count >= 0, got {n!r}")
            known = set(Group.__dataclass_fields__)
            return Group(**{k: v for k, v in value.items() if k in known})

        return cls(
            model=data["model"], frame=data["frame"], overall=group(data.get("overall"), "overall"),
            categories={k: group(v, f"categories.{k}")
                        for k, v in (data.get("categories") or {}).items()},
            clusters=[group(v, f"clusters[{i}]") for i, v in enumerate(data.get("clusters", []))],
            difficulty_bands=[group(v, f"difficulty_bands[{i}]")
                              for i, v in enumerate(data.get("difficulty_bands", []))],
            source=dict(data.get("source") or {}), facts=dict(data.get("facts") or {}))


def read_profile(path: str | Path) -> Profile:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    except OSError as exc:
        raise ValueError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    return Profile.from_dict(data, str(p))


def _mean(values: np.ndarray | None, sel: np.ndarray) -> float | None:
    if values is None or not len(sel) or not np.isfinite(values[sel]).any():
        return None
    return float(f"{np.nanmean(values[sel]):.4g}")


def _group(mask: np.ndarray, scores: np.ndarray, ids: Sequence[str],
           costs: np.ndarray | None, latency: np.ndarray | None,
           extra: dict[str, Any] | None = None) -> Group:
    sel = np.flatnonzero(mask & np.isfinite(scores))
    quality = round(float(scores[sel].mean()), 4) if len(sel) else 0.0
    return Group(quality=quality, n=int(len(sel)), cost_usd=_mean(costs, sel),
                 latency_s=_mean(latency, sel), query_ids=[ids[i] for i in sel[:MAX_IDS]],
                 **(extra or {}))


def build_profile(
    model: str, frame: str, scores: np.ndarray, ids: Sequence[str],
    categories: Sequence[str | None], cluster: np.ndarray, band: np.ndarray,
    band_edges: Sequence[float], n_clusters: int, costs: np.ndarray | None = None,
    source: Mapping[str, Any] | None = None, facts: Mapping[str, Any] | None = None,
    latency: np.ndarray | None = None,
) -> Profile:
    """A profile from one model's results: scores (N,) (NaN = none), the records' ids,
    categories, cluster index (N,) and difficulty band index (N,) in the frame; band b spans
    ``band_edges[b]..band_edges[b + 1]`` of predicted difficulty; costs and latency (N,)
    where known (NaN = unknown)."""
    cats = np.array([c or "" for c in categories])
    everything = np.ones(len(scores), dtype=bool)
    by_cat = {str(c): _group(cats == c, scores, ids, costs, latency)
              for c in sorted(set(cats) - {""})}
    clusters = []
    for k in range(n_clusters):
        members = cluster == k
        top = None
        if members.any() and (cats[members] != "").any():
            values, counts = np.unique(cats[members][cats[members] != ""], return_counts=True)
            top = str(values[counts.argmax()])
        clusters.append(_group(members, scores, ids, costs, latency, {"top_category": top}))
    edges = list(band_edges)
    bands = [_group(band == b, scores, ids, costs, latency,
                    {"low": round(float(lo), 4), "high": round(float(hi), 4)})
             for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
    return Profile(model, frame, _group(everything, scores, ids, costs, latency), by_cat,
                   clusters, bands, dict(source or {}), dict(facts or {}))
