"""The evaluation's inputs, computed once and shared by every split: records, prices, text
embeddings, image features, and the blank image's features."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coe_gateway.eval.costs import ModelPrice, resolve_prices
from coe_gateway.eval.datasets import default_models_json, load_models_json, load_records
from coe_gateway.eval.suite import Suite, load_suite
from coe_gateway.records import RecordSet

IMAGE_KINDS = ("pixels", "ocr", "stats")
BLANK_SIZE = (1024, 768)


@dataclass
class EvalData:
    """Everything row-aligned with ``records``.

    scores: (N, E) 0/1, missing = 0; text: (N, Dt) unit vectors; blocks: {kind: (N, D_k)};
    present: (N,) bool; blank: {kind: (D_k,)} the blank image's features.
    """

    suite: Suite
    suite_path: str
    records: RecordSet
    prices: dict[str, ModelPrice]
    scores: np.ndarray
    text: np.ndarray
    blocks: dict[str, np.ndarray]
    present: np.ndarray
    blank: dict[str, np.ndarray]
    blank_how: str

    @property
    def experts(self) -> list[str]:
        return list(self.records.models)

    @property
    def subjects(self) -> list[str | None]:
        return list(self.records.categories)

    @property
    def levels(self) -> list[object]:
        return [m.get("level") for m in self.records.meta]


def sample_rows(n: int, limit: int | None, seed: int) -> np.ndarray:
    """All rows, or a seeded sample of ``limit`` of them (sorted)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def blank_features(kinds: Sequence[str]) -> tuple[dict[str, np.ndarray], str]:
    """The features of one blank white 1024x768 PNG through the real extractors; zero rows
    (and a note saying so) if the featurizer cannot produce them."""
    from coe_gateway.vision.features.base import feature_dim
    from coe_gateway.vision.features.featurizer import ImageFeaturizer
    from coe_gateway.vision.images import blank_png

    featurizer = ImageFeaturizer(list(kinds))
    try:
        features = featurizer.extract([blank_png(BLANK_SIZE)])
    except ValueError:
        return ({k: np.zeros(feature_dim(k), np.float32) for k in kinds},
                "zero rows: the featurizer gave nothing for the blank image")
    finally:
        featurizer.close()
    # float16-rounded, as the feature stores hold every other image's features
    return ({k: np.asarray(features[k], np.float16).astype(np.float32) for k in kinds},
            "features of a blank white 1024x768 PNG through the real extractors")


def load_eval_data(suite_path: str | Path, limit: int | None = None, seed: int = 0,
                   kinds: Sequence[str] = IMAGE_KINDS) -> EvalData:
    """Load the suite's records (all, or a seeded sample of ``limit``), their prices, text
    embeddings (MiniLM, disk-cached) and image features (shipped stores, else computed)."""
    from coe_gateway.routers.embedding import embed_texts
    from coe_gateway.vision.features.featurizer import image_features_for_paths

    suite = load_suite(suite_path)
    records = load_records(suite.data.paths, suite.data.format)
    records = records.subset(sample_rows(len(records), limit, seed))
    models_json = load_models_json(suite.data.models_json or default_models_json(suite.data.paths))
    prices = resolve_prices(records.models, suite.costs, models_json, str(suite_path))
    text = embed_texts([q.text for q in records.queries()], None)  # (N, Dt)
    batch = image_features_for_paths(records.images or [None] * len(records), list(kinds))
    blank, how = blank_features(kinds)
    return EvalData(suite, str(suite_path), records, prices,
                    np.nan_to_num(records.scores, nan=0.0), np.asarray(text, np.float32),
                    {k: np.asarray(batch.features[k], np.float32) for k in kinds},
                    np.asarray(batch.present, bool), blank, how)
