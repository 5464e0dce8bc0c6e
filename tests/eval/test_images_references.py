"""Reference routers of the image evaluation: best single, subject prior, variants' names."""

from __future__ import annotations

import numpy as np
import pytest

from coe_gateway.eval.images.references import (
    best_single,
    reference_points,
    subject_prior_quality,
)
from coe_gateway.eval.images.variants import Variant, control_blocks, variants_for


def test_best_single_breaks_ties_by_estimated_cost() -> None:
    scores = np.array([[1, 1, 0], [0, 0, 1.0]])
    est = np.array([[2.0, 1.0, 1.0], [2.0, 1.0, 1.0]])
    assert best_single(scores, est) == 1


def test_subject_prior_uses_train_means_per_subject() -> None:
    scores = np.array([[1, 0], [1, 0], [0, 1.0]])
    q = subject_prior_quality(scores, ["a", "a", "b"], ["b", "a", "unseen"])
    assert q.tolist() == [[0, 1], [1, 0], pytest.approx([2 / 3, 1 / 3])]


def test_reference_points_oracle_and_best() -> None:
    scores = np.array([[1, 0], [0, 1.0]])
    real = np.array([[1.0, 2.0], [1.0, 2.0]])
    p = reference_points(scores, real, best=0, seed=0)
    assert p["oracle"] == {"accuracy": 1.0, "cost": 1.5}
    assert p["best-single"] == {"accuracy": 0.5, "cost": 1.0}


def test_variants_and_controls() -> None:
    names = [v.name for v in variants_for("image-knn", ["px", "all"], ["mean", "concat"],
                                          ["shuffled", "text-at-test"])]
    assert names == ["T", "T+px-mean", "T+px-concat", "T+all-mean", "T+all-concat",
                     "T+all-concat/shuffled", "T+all-concat/text-at-test"]
    cmr = [v.name for v in variants_for("image-cmr", ["px"], ["mean"], ["blank"])]
    assert cmr == ["T", "T+px", "T+px/blank"]  # no "all" set: the last set is primary
    assert Variant("all", "concat", "text-at-test").fit_key == "T+all-concat"
    blocks = {"stats": np.arange(12, dtype=np.float32).reshape(4, 3)}
    present = np.ones(4, bool)
    shuf, _ = control_blocks("shuffled", blocks, present, {}, seed=0, at_test=False)
    assert sorted(map(tuple, shuf["stats"])) == sorted(map(tuple, blocks["stats"]))
    assert not np.array_equal(shuf["stats"], blocks["stats"])
    blank, _ = control_blocks("blank", blocks, present, {"stats": np.ones(3)}, 0, True)
    assert np.all(blank["stats"] == 1.0)
    gone, pres = control_blocks("text-at-test", blocks, present, {}, 0, at_test=True)
    assert not pres.any() and not gone["stats"].any()
    kept, _ = control_blocks("text-at-test", blocks, present, {}, 0, at_test=False)
    assert np.array_equal(kept["stats"], blocks["stats"])
