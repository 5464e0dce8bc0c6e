"""The image evaluation on synthetic data whose image carries the signal: the image-aware
router gains over text only, and the shuffled / blank / text-at-test controls remove it."""

from __future__ import annotations

import numpy as np
import pytest

from coe_gateway.eval.costs import ModelPrice
from coe_gateway.eval.images.data import EvalData
from coe_gateway.eval.images.evaluate import measure, router_quality, split_context
from coe_gateway.eval.images.splits import Split
from coe_gateway.eval.images.variants import Variant
from coe_gateway.eval.suite import CostSpec, DataSpec, Suite
from coe_gateway.records import RecordSet

MODELS = ["cheap", "mid", "dear"]


def synthetic(n: int = 600, seed: int = 0) -> EvalData:
    """Text says nothing; the image's latent class z says which model is right (90%)."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 3, n)
    scores = np.where(np.eye(3)[z] > 0, rng.random((n, 3)) < 0.9, rng.random((n, 3)) < 0.1)
    image = np.eye(3)[z] + 0.2 * rng.standard_normal((n, 3))  # (N, 3)
    stats = np.concatenate([image, 0.2 * rng.standard_normal((n, 5))], axis=1)  # (N, 8)
    text = rng.standard_normal((n, 16))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    records = RecordSet(ids=[str(i) for i in range(n)], prompts=["q" * 40] * n,
                        categories=["s"] * n, splits=[None] * n, models=MODELS,
                        scores=scores.astype(float), output_chars=np.full((n, 3), 400.0),
                        images=["x.png"] * n)
    suite = Suite(name="synthetic", data=DataSpec(paths=["x"]),
                  costs=CostSpec(model="tokens-times-price"))
    prices = {m: ModelPrice(p, p, "test") for m, p in zip(MODELS, (0.1, 1.0, 10.0))}
    return EvalData(suite, "<synthetic>", records, prices, scores.astype(float),
                    text.astype(np.float32), {"stats": stats.astype(np.float32)},
                    np.ones(n, bool), {"stats": np.zeros(8, np.float32)}, "zeros (test)")


@pytest.mark.parametrize("kind", ["image-linearmf", "image-knn"])
def test_shuffled_and_blank_images_remove_a_real_gain(kind: str) -> None:
    data = synthetic()
    idx = np.random.default_rng(1).permutation(len(data.records))
    split = Split("f0.0", np.sort(idx[:450]), np.sort(idx[450:]))
    ctx = split_context(data, split, points=30)
    got = {}
    for v in (Variant("T", "concat"), Variant("stat", "concat"),
              Variant("stat", "concat", "shuffled"), Variant("stat", "concat", "blank"),
              Variant("stat", "concat", "text-at-test")):
        quality, _ = router_quality(kind, v, ctx, seed=0, options={})
        got[v.name] = measure(ctx, quality)[0]["metrics"]
    gain = got["T+stat-concat"]["nauc_common"] - got["T"]["nauc_common"]
    assert gain > 0.2  # the image says which model is right
    assert got["T+stat-concat"]["auroc"] > got["T"]["auroc"] + 0.2
    for control in ("shuffled", "blank", "text-at-test"):
        diff = got[f"T+stat-concat/{control}"]["nauc_common"] - got["T"]["nauc_common"]
        assert abs(diff) < 0.06, (control, diff)
    assert got["T+stat-concat/text-at-test"] == got["T"]  # the text twin, exactly


def test_mmr_split_adds_controls_of_the_best_variant_and_bootstraps(tmp_path) -> None:
    from coe_gateway.eval.images.run import Settings, _bootstrap_row, _router_variants
    from coe_gateway.eval.images.store import RowStore

    data = synthetic(n=400)
    idx = np.random.default_rng(2).permutation(400)
    ctx = split_context(data, Split("mmr", np.sort(idx[:200]), np.sort(idx[200:])), points=20)
    s = Settings(suite=tmp_path, out=tmp_path, cache=tmp_path / "c", feature_sets=("stat",),
                 fusions=("mean", "concat"), controls=("shuffled",), n_boot=200)
    store = RowStore(tmp_path / "rows.jsonl", tmp_path / "c")
    choices = _router_variants("image-linearmf", ctx, s, store, lambda _: None)
    base = {"T", "T+stat-mean", "T+stat-concat", "T+stat-concat/shuffled"}
    assert set(choices) in (base, base | {"T+stat-mean/shuffled"})
    _bootstrap_row("image-linearmf", ctx, s, store, choices)
    row = store.rows["bootstrap|mmr|image-linearmf|*"]
    best = next(k for k in row["vs_shuffled"])
    gain = row["vs_shuffled"][best]["nauc_common"]
    assert gain["low"] > 0  # the real image beats its shuffled twin on this data
