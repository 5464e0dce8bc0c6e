"""The whole image-routing evaluation: every split x router x variant, resumable.

``run(settings)`` loads the data once (:mod:`.data`), then for each split (:mod:`.splits`)
fits the references and every router variant on train, sweeps them on test
(:mod:`.evaluate`), appends one row per (split, router, variant) to ``rows.jsonl`` and, on
the MMR split, a paired-bootstrap row per router (:mod:`.bootstrap`). Rows already in the
file are skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from coe_gateway.eval.images import bootstrap
from coe_gateway.eval.images.data import EvalData, load_eval_data
from coe_gateway.eval.images.evaluate import SplitContext, measure, router_quality, split_context
from coe_gateway.eval.images.references import (
    reference_points,
    single_quality,
    subject_prior_quality,
)
from coe_gateway.eval.images.splits import Split, all_splits, mmr_split
from coe_gateway.eval.images.store import RowStore
from coe_gateway.eval.images.variants import CONTROLS, FUSIONS, Variant, variants_for

ROUTERS = ("image-knn", "image-linearmf", "image-mlpmf", "image-kmeans", "image-cmr")
FEATURE_SETS = ("px", "ocr", "stat", "all")
REFERENCE_ROUTERS = ("single", "subject-prior")


@dataclass(frozen=True)
class Settings:
    """What to run. ``fold_seeds_of`` limits a router to some fold seeds (CPU budget;
    absent = every seed; the MMR split always runs)."""

    suite: Path
    out: Path
    cache: Path
    routers: tuple[str, ...] = ROUTERS
    feature_sets: tuple[str, ...] = FEATURE_SETS
    fusions: tuple[str, ...] = FUSIONS
    controls: tuple[str, ...] = CONTROLS
    n_folds: int = 5
    fold_seeds: tuple[int, ...] = (0, 1, 2)
    fold_seeds_of: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: {
        "image-mlpmf": (0,), "image-cmr": ()})
    router_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    n_boot: int = 1000
    points: int = 60
    seed: int = 0
    limit: int | None = None
    only_mmr: bool = False

    def quick(self) -> Settings:
        """A few hundred records, the MMR split, kNN and LinearMF, T vs T+all-concat."""
        return replace(self, routers=("image-knn", "image-linearmf"), feature_sets=("all",),
                       fusions=("concat",), controls=(), n_boot=200, limit=400,
                       only_mmr=True, points=30)

    def runs_on(self, kind: str, split: Split) -> bool:
        if split.is_mmr or kind not in self.fold_seeds_of:
            return True
        return int(split.name[1:].split(".")[0]) in self.fold_seeds_of[kind]


def _splits(data: EvalData, s: Settings) -> list[Split]:
    if s.only_mmr:
        return [mmr_split(len(data.records))]
    return all_splits(data.subjects, data.levels, s.n_folds, s.fold_seeds)


def _split_row(ctx: SplitContext, s: Settings) -> dict[str, Any]:
    return {"type": "split", "split": ctx.split.name, "n_train": len(ctx.split.train),
            "n_test": len(ctx.split.test), "best": ctx.ref.best,
            "reference": vars(ctx.ref), "lams": ctx.lams.tolist(), "costs": ctx.costs,
            "points": reference_points(ctx.scores_test, ctx.real_test, ctx.best, s.seed)}


def _reference_quality(name: str, ctx: SplitContext) -> np.ndarray:
    if name == "single":
        return single_quality(ctx.scores_train, len(ctx.split.test))
    subj = ctx.data.subjects
    return subject_prior_quality(ctx.scores_train, [subj[i] for i in ctx.split.train],
                                 [subj[i] for i in ctx.split.test])


def _curve_row(ctx: SplitContext, router: str, variant: str, quality: np.ndarray,
               store: RowStore, extra: Mapping[str, Any]) -> np.ndarray:
    row, choices = measure(ctx, quality)
    store.add({"type": "curve", "split": ctx.split.name, "router": router, "variant": variant,
               **extra, **row})
    if ctx.split.is_mmr:
        store.save_choices(ctx.split.name, router, variant, choices)
    return choices


def _run_variants(kind: str, variants: list[Variant], ctx: SplitContext, s: Settings,
                  store: RowStore, log: Callable[[str], None],
                  choices: dict[str, np.ndarray | None]) -> None:
    for v in variants:
        key = {"type": "curve", "split": ctx.split.name, "router": kind, "variant": v.name}
        if store.has(**key):
            if ctx.split.is_mmr:
                choices[v.name] = store.load_choices(ctx.split.name, kind, v.name)
            continue
        quality, timing = router_quality(kind, v, ctx, s.seed, s.router_options.get(kind, {}))
        extra = {"feature_set": v.feature_set, "fusion": v.fusion, "control": v.control,
                 **timing}
        choices[v.name] = _curve_row(ctx, kind, v.name, quality, store, extra)
        m = store.rows[f"curve|{ctx.split.name}|{kind}|{v.name}"]["metrics"]
        log(f"{ctx.split.name} {kind} {v.name}: nAUC(common) {m['nauc_common']:.4f} "
            f"Ps {m['ps']:.4f} fit {timing['fit_s']:.1f}s")


def best_variant(kind: str, split: str, variants: list[Variant], store: RowStore
                 ) -> Variant | None:
    """The image variant (no control) of highest common-grid nAUC on ``split``."""
    rows = {v.name: store.rows.get(f"curve|{split}|{kind}|{v.name}") for v in variants
            if v.features and v.control is None}
    scored = [(r["metrics"]["nauc_common"], v) for v in variants
              if (r := rows.get(v.name)) is not None]
    return max(scored, key=lambda x: x[0])[1] if scored else None


def _router_variants(kind: str, ctx: SplitContext, s: Settings, store: RowStore,
                     log: Callable[[str], None]) -> dict[str, np.ndarray | None]:
    """Every variant of one router on one split; on the MMR split also the shuffled and
    blank controls of the router's best image variant. The MMR split's choices by variant."""
    choices: dict[str, np.ndarray | None] = {}
    variants = variants_for(kind, s.feature_sets, s.fusions, s.controls)
    _run_variants(kind, variants, ctx, s, store, log, choices)
    best = best_variant(kind, ctx.split.name, variants, store)
    if ctx.split.is_mmr and best is not None and s.controls:
        extra = [Variant(best.feature_set, best.fusion, c) for c in ("shuffled", "blank")
                 if c in s.controls]
        _run_variants(kind, [v for v in extra if v.name not in {x.name for x in variants}],
                      ctx, s, store, log, choices)
    return choices


def _bootstrap_row(kind: str, ctx: SplitContext, s: Settings, store: RowStore,
                   choices: Mapping[str, np.ndarray | None]) -> None:
    """Paired bootstrap of every variant of ``kind`` against its T on the MMR split, and of
    every image variant with a shuffled twin against that twin (redone when variants were
    added since the last one)."""
    have = {k: v for k, v in choices.items() if v is not None}
    old = store.rows.get(f"bootstrap|{ctx.split.name}|{kind}|*")
    if "T" not in have or (old is not None and set(old["deltas"]) >= set(have) - {"T"}):
        return
    est = {k: store.rows[f"curve|{ctx.split.name}|{kind}|{k}"]["metrics"] for k in have}
    data = bootstrap.Resampled(ctx.scores_test, ctx.real_test, ctx.best,
                               bootstrap.resample_weights(len(ctx.split.test), s.n_boot,
                                                          s.seed))
    deltas = bootstrap.paired_deltas(data, have, {k: "T" for k in have if k != "T"}, est)
    twins = {k: f"{k}/shuffled" for k in have if "/" not in k and f"{k}/shuffled" in have}
    vs_shuffled = bootstrap.paired_deltas(data, have, twins, est)

    def plain(d: Mapping[str, Mapping[str, bootstrap.Delta]]) -> dict[str, Any]:
        return {k: {m: vars(x) for m, x in v.items()} for k, v in d.items()}

    store.add({"type": "bootstrap", "split": ctx.split.name, "router": kind, "variant": "*",
               "n_boot": s.n_boot, "deltas": plain(deltas), "vs_shuffled": plain(vs_shuffled)})


def run(s: Settings, log: Callable[[str], None] = print) -> RowStore:
    """Run (or resume) the evaluation; returns the filled store."""
    t0 = time.perf_counter()
    data = load_eval_data(s.suite, s.limit, s.seed)
    log(f"data: {len(data.records)} records, {len(data.experts)} models, "
        f"loaded in {time.perf_counter() - t0:.1f}s; blank image: {data.blank_how}")
    store = RowStore(s.out / "rows.jsonl", s.cache)
    for split in _splits(data, s):
        ctx = split_context(data, split, s.points)
        if not store.has(type="split", split=split.name):
            store.add(_split_row(ctx, s))
        for name in REFERENCE_ROUTERS:
            if not store.has(type="curve", split=split.name, router="reference", variant=name):
                _curve_row(ctx, "reference", name, _reference_quality(name, ctx), store, {})
        for kind in s.routers:
            if s.runs_on(kind, split):
                choices = _router_variants(kind, ctx, s, store, log)
                if split.is_mmr:
                    _bootstrap_row(kind, ctx, s, store, choices)
        ctx.fitted.clear()
    store.add({"type": "run", "split": "", "router": "", "variant": str(time.time()),
               "wall_s": time.perf_counter() - t0, "blank_how": data.blank_how,
               "n_records": len(data.records)})
    return store
