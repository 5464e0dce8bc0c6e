"""Reading the rows file: curves by key, paired deltas, fold statistics, the targets."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from coe_gateway.eval.images.bootstrap import holm
from coe_gateway.eval.images.store import RowStore
from coe_gateway.eval.images.variants import PRIMARY_FUSION, PRIMARY_SET

PRIMARY_ROUTER = "image-linearmf"
PRIMARY_VARIANT = f"T+{PRIMARY_SET}-{PRIMARY_FUSION}"
PRIMARY_METRIC = "nauc_common"
MARGIN_PS = 0.02


def curves(store: RowStore, split: str) -> dict[tuple[str, str], dict[str, Any]]:
    """{(router, variant): curve row} of one split."""
    return {(r["router"], r["variant"]): r for r in store.of_type("curve") if r["split"] == split}


def split_row(store: RowStore, split: str) -> dict[str, Any]:
    return next(r for r in store.of_type("split") if r["split"] == split)


def deltas(store: RowStore, split: str = "mmr", field: str = "deltas"
           ) -> dict[tuple[str, str], dict[str, Any]]:
    """{(router, variant): {metric: {estimate, low, high, p}}} vs the router's T (``field``
    "vs_shuffled": vs the variant's own shuffled-image twin)."""
    out = {}
    for r in store.of_type("bootstrap"):
        if r["split"] == split:
            for variant, d in r.get(field, {}).items():
                out[(r["router"], variant)] = d
    return out


def holm_adjusted(d: Mapping[tuple[str, str], Mapping[str, Any]], metric: str = PRIMARY_METRIC
                  ) -> dict[tuple[str, str], float]:
    """Holm over every comparison but the pre-registered primary one (which stays raw)."""
    rest = {k: float(v[metric]["p"]) for k, v in d.items()
            if k != (PRIMARY_ROUTER, PRIMARY_VARIANT)}
    adj = holm(rest)
    if (PRIMARY_ROUTER, PRIMARY_VARIANT) in d:
        adj[(PRIMARY_ROUTER, PRIMARY_VARIANT)] = float(d[(PRIMARY_ROUTER, PRIMARY_VARIANT)]
                                                       [metric]["p"])
    return adj


@dataclass(frozen=True)
class FoldStat:
    mean: float
    sd: float
    n: int


def fold_stats(store: RowStore, metric: str = PRIMARY_METRIC, delta: bool = True,
               base_variant: str = "T") -> dict[tuple[str, str], FoldStat]:
    """Mean +- sd over the folds (splits ``f*``) of each (router, variant)'s metric, or of its
    difference to the same router's ``base_variant`` on the same fold."""
    by: dict[tuple[str, str], list[float]] = {}
    rows = [r for r in store.of_type("curve") if r["split"].startswith("f")]
    t = {(r["split"], r["router"]): r["metrics"][metric] for r in rows
         if r["variant"] == base_variant}
    for r in rows:
        base = t.get((r["split"], r["router"])) if delta else 0.0
        if delta and (base is None or r["variant"] == base_variant
                      or r["router"] == "reference"):
            continue
        by.setdefault((r["router"], r["variant"]), []).append(r["metrics"][metric] - (base or 0.0))
    return {k: FoldStat(float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else math.nan,
                        len(v)) for k, v in by.items()}


def is_image_variant(variant: str) -> bool:
    return variant != "T" and "/" not in variant


def targets(store: RowStore) -> dict[str, Any]:
    """The issue's three targets on the MMR split, with their intervals."""
    d, c = deltas(store), curves(store, "mmr")
    ref = split_row(store, "mmr")["reference"]
    image = {k: v for k, v in d.items() if is_image_variant(k[1])}
    out: dict[str, Any] = {"best_single": ref["best"], "best_single_accuracy": ref["best_accuracy"]}
    if image:
        best = max(image, key=lambda k: image[k][PRIMARY_METRIC]["estimate"])
        b = image[best][PRIMARY_METRIC]
        ps = c[best]["metrics"]["ps"]
        holm_p = holm_adjusted(d).get(best, math.nan)
        twin = deltas(store, field="vs_shuffled").get(best, {}).get(PRIMARY_METRIC)
        fold = fold_stats(store).get(best)
        out["beats_text"] = {"router": best[0], "variant": best[1], **b, "holm_p": holm_p,
                             "folds": vars(fold) if fold else None,
                             "met": b["low"] > 0, "met_after_holm": holm_p < 0.05,
                             "vs_shuffled": twin}
        out["peak_accuracy"] = {"router": best[0], "variant": best[1], "ps": ps,
                                "needed": ref["best_accuracy"] + MARGIN_PS,
                                "met": ps >= ref["best_accuracy"] + MARGIN_PS,
                                "best_ps_any": max(c[k]["metrics"]["ps"] for k in image)}
    text = {k: v[PRIMARY_METRIC] for k, v in d.items() if k[1].endswith("/text-at-test")}
    out["text_only"] = {"per_router": {k[0]: v for k, v in text.items()},
                        "met": bool(text) and all(v["high"] >= 0 for v in text.values())}
    return out
