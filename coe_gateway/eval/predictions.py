"""Training the suite's routers and caching their predictions.

A router is trained on the train split with its kind's ``fit(train, **options)`` classmethod
(or loaded from ``path``), then asked ``predict(test.queries())``: exactly the objects the
gateway serves. Predictions are cached per (router, split) for the run, so sweeping a policy
costs no further router calls, and, with a cache directory, on disk as safetensors + JSON,
keyed by the router entry, the data files, the split and the router's source code.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coe_gateway.errors import ConfigError
from coe_gateway.eval.suite import SuiteRouter
from coe_gateway.records import RecordSet
from coe_gateway.routers.base import Prediction, Query, Router
from coe_gateway.routers.registry import load_router, router_class

PREDICT_BATCH = 512


@dataclass
class RouterRun:
    """One router's prediction for one split, and what it took."""

    name: str
    prediction: Prediction
    fit_s: float = 0.0
    predict_s: float = 0.0
    cached: bool = False


def train_sample(train: RecordSet, limit: int | None, seed: int) -> RecordSet:
    """At most ``limit`` training records, a seeded sample (all of them when no limit)."""
    if limit is None or limit >= len(train):
        return train
    idx = np.sort(np.random.default_rng(seed).choice(len(train), size=limit, replace=False))
    return train.subset(idx)


def build_router(
    entry: SuiteRouter, train: RecordSet, suite_path: str, where: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> Router:
    """Load ``entry.path`` or fit ``entry.kind`` on ``train`` (ConfigError naming the entry).
    A ``fit`` that takes a ``progress`` callback ``(done, total)`` gets ``on_progress``."""
    try:
        if entry.path is not None:
            router = load_router(entry.path)
            if router.kind != entry.kind:
                raise ValueError(f"{entry.path} holds a {router.kind!r} router, not {entry.kind!r}")
            return router
        cls = router_class(entry.kind)
        fit: Callable[..., Router] | None = getattr(cls, "fit", None)
        if fit is None:
            raise ValueError(f"router kind {entry.kind!r} cannot be trained here (no fit); "
                             "give a 'path' to a saved one")
        options = dict(entry.options)
        if on_progress is not None and "progress" in inspect.signature(fit).parameters:
            options["progress"] = on_progress
        return fit(train, **options)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(suite_path, where, str(exc)) from exc


def predict_batched(
    router: Router, queries: Sequence[Query], advance: Callable[[int], None] | None = None
) -> Prediction:
    """``router.predict`` in batches (so progress can move), concatenated."""
    parts = []
    for start in range(0, len(queries), PREDICT_BATCH):
        batch = queries[start:start + PREDICT_BATCH]
        parts.append(router.predict(batch))
        if advance is not None:
            advance(len(batch))
    experts = parts[0].experts
    return Prediction(experts, np.concatenate([p.quality for p in parts]),
                      np.concatenate([p.confidence for p in parts]))


def _file_stamp(path: str) -> list[object]:
    st = Path(path).stat()
    return [path, st.st_size, int(st.st_mtime)]


def cache_key(entry: SuiteRouter, data_paths: Sequence[str], train: RecordSet,
              test: RecordSet, seed: int) -> str:
    """Hash of everything a cached prediction depends on."""
    try:
        source = inspect.getsource(router_class(entry.kind))
    except (OSError, TypeError, ValueError):
        source = entry.kind
    blob = json.dumps({
        "entry": entry.model_dump(mode="json"), "data": [_file_stamp(p) for p in data_paths],
        "train": hashlib.sha256("\n".join(train.ids).encode()).hexdigest(),
        "test": hashlib.sha256("\n".join(test.ids).encode()).hexdigest(),
        "models": train.models, "seed": seed,
        "source": hashlib.sha256(source.encode()).hexdigest(),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class PredictionStore:
    """Predictions per (router name, split) for a run; on disk too when ``directory`` is set."""

    directory: Path | None = None
    memory: dict[tuple[str, str], RouterRun] = field(default_factory=dict)

    def load(self, key: str) -> Prediction | None:
        if self.directory is None:
            return None
        d = self.directory / key
        if not (d / "prediction.safetensors").exists():
            return None
        from safetensors.numpy import load_file

        meta = json.loads((d / "prediction.json").read_text(encoding="utf-8"))
        arrays = load_file(str(d / "prediction.safetensors"))
        return Prediction(tuple(meta["experts"]), arrays["quality"], arrays["confidence"])

    def save(self, key: str, prediction: Prediction) -> None:
        if self.directory is None:
            return
        from safetensors.numpy import save_file

        d = self.directory / key
        d.mkdir(parents=True, exist_ok=True)
        save_file({"quality": np.ascontiguousarray(prediction.quality, dtype=np.float64),
                   "confidence": np.ascontiguousarray(prediction.confidence, dtype=np.float64)},
                  str(d / "prediction.safetensors"))
        (d / "prediction.json").write_text(json.dumps({"experts": list(prediction.experts)}),
                                           encoding="utf-8")


def run_router(
    entry: SuiteRouter, train: RecordSet, test: RecordSet, *, store: PredictionStore,
    split: str, data_paths: Sequence[str], seed: int, suite_path: str, where: str,
    advance: Callable[[int], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RouterRun:
    """The router's prediction on ``test`` (from the run's memory, the disk cache, or by
    training and predicting), restricted to experts the data has."""
    if (entry.name, split) in store.memory:
        return store.memory[(entry.name, split)]
    key = f"{entry.name}-{cache_key(entry, data_paths, train, test, seed)}"
    cached = store.load(key)
    run = RouterRun(entry.name, cached, cached=True) if cached is not None else None
    if run is None:
        t0 = time.perf_counter()
        router = build_router(entry, train_sample(train, entry.train_limit, seed), suite_path,
                              where, on_progress)
        t1 = time.perf_counter()
        prediction = predict_batched(router, test.queries(), advance)
        run = RouterRun(entry.name, prediction, t1 - t0, time.perf_counter() - t1)
        store.save(key, prediction)
    elif advance is not None:
        advance(len(test))
    known = [e for e in run.prediction.experts if e in test.models]
    if not known:
        raise ConfigError(suite_path, where, f"router {entry.name!r} predicts none of the data's "
                          f"models (it knows {list(run.prediction.experts)})")
    run.prediction = run.prediction.select(known)
    store.memory[(entry.name, split)] = run
    return run
