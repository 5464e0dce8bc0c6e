"""Training a router from routing records, as ``coe-gateway train router`` does it.

The records are read with the evaluator's readers (routing-records JSONL, RouterBench CSV or
pickle) and split exactly as an evaluation suite splits them (the source's split, else a
seeded random one with the same defaults: 30% test, seed 0), so a router trained here on the
train split can be evaluated by path on the suite's test split without leakage.

Embedding, the slow part, runs first with a progress callback (it fills the disk cache the
router's ``fit`` then reads), and so do the image features of routers that read images
(``reads_images`` and a ``features`` option: the image-aware routers); routers whose ``fit``
takes ``progress`` report epochs too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from coe_gateway.records import RecordSet
from coe_gateway.routers.base import Router
from coe_gateway.routers.embedding import embed_texts
from coe_gateway.routers.registry import router_class

Report = Callable[[str, int, int], None]


def load_split(paths: Sequence[str], split: str = "train", test_fraction: float = 0.3,
               seed: int = 0, models: Sequence[str] | None = None) -> RecordSet:
    """The ``train`` or ``test`` part of the records (or ``all`` of them)."""
    from coe_gateway.eval.datasets import load_records, split_indices

    records = load_records(list(paths))
    if models:
        records = records.select_models(list(models))
    if split == "all":
        return records
    if split not in ("train", "test"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    train, test, _ = split_indices(records, test_fraction, seed)
    return records.subset(train if split == "train" else test)


def parse_options(pairs: Sequence[str], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``key=value`` pairs (values parsed as YAML; dotted keys nest) over ``base``."""
    out: dict[str, Any] = dict(base or {})
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"option {pair!r}: expected key=value")
        target = out
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise ValueError(f"option {pair!r}: {p} is not a mapping")
        target[leaf] = yaml.safe_load(value)
    return out


def train_router(kind: str, train: RecordSet, experts: Sequence[str] | None = None,
                 options: Mapping[str, Any] | None = None,
                 report: Report | None = None) -> Router:
    """Fit ``kind`` on ``train`` (embedding first, with progress)."""
    cls = router_class(kind)
    fit: Callable[..., Router] | None = getattr(cls, "fit", None)
    if fit is None:
        raise ValueError(f"router kind {kind!r} has no fit: it is configured, not trained")
    opts = dict(options or {})
    if kind != "prior":
        embed_texts([q.text for q in train.queries()], opts.get("encoder"),
                    None if report is None else (lambda d, n: report("embedding queries", d, n)))
    wanted = (opts.get("features") or []) if getattr(cls, "reads_images", False) else []
    kinds = [wanted] if isinstance(wanted, str) else list(wanted)
    if kinds:
        from coe_gateway.vision.features.featurizer import image_features_for_paths

        image_features_for_paths(
            [q.image for q in train.queries()], kinds, opts.get("feature_options"),
            None if report is None else (lambda d, n: report("image features", d, n)))
    if report is not None and "progress" in inspect.signature(fit).parameters:
        opts["progress"] = lambda d, n: report("training", d, n)
    return fit(train, list(experts) if experts else None, **opts)
