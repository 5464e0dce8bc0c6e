"""Curve metrics of the image evaluation: common-grid nAUC, sweeps, correctness metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coe_gateway.eval.images.frontier import (
    Reference,
    common_nauc,
    correctness_metrics,
    curve,
    curve_metrics,
    lam_grid,
    sweep_choices,
)


def test_common_nauc_by_hand_flat_outside_own_range() -> None:
    # frontier (1, .2) (2, .4) (3, .5); (2.5, .3) is dominated; grid [0, 4]:
    # [0,1] flat .2 -> .2; [1,2] -> .3; [2,3] -> .45; [3,4] flat .5 -> .5; sum 1.45 / 4
    cost = np.array([3.0, 1.0, 2.5, 2.0])
    acc = np.array([0.5, 0.2, 0.3, 0.4])
    assert common_nauc(cost, acc, 0.0, 4.0) == pytest.approx(1.45 / 4)
    # inside its own range only: the MMR-style mean height between 1 and 3
    assert common_nauc(cost, acc, 1.0, 3.0) == pytest.approx((0.3 + 0.45) / 2)


def test_common_grid_differs_from_own_range_nauc() -> None:
    # one cheap high point: own-range nAUC is its quality; on the common grid it is flat too
    ref = Reference("m", 0.3, 2.0, 0.0, 4.0)
    narrow = curve_metrics(np.array([1.0]), np.array([0.6]), ref)
    assert narrow["nauc"] == pytest.approx(0.6)
    assert narrow["nauc_common"] == pytest.approx(0.6)
    wide = curve_metrics(np.array([0.0, 4.0]), np.array([0.2, 0.6]), ref)
    assert wide["nauc"] == pytest.approx(0.4)
    assert wide["qnc"] == pytest.approx(2.0)  # reaches .3 first at cost 4; best costs 2
    assert math.isinf(curve_metrics(np.array([1.0]), np.array([0.1]), ref)["qnc"])


def test_sweep_goes_from_quality_to_cheapest() -> None:
    quality = np.array([[0.9, 0.1], [0.2, 0.8]])  # (N=2, E=2)
    est = np.array([[1e-3, 1e-4], [1e-3, 1e-4]])  # model 1 ten times cheaper
    lams = lam_grid(est, points=20)
    assert lams[0] == 0.0 and np.all(np.diff(lams) > 0)
    choices = sweep_choices(quality, est, lams)  # (L, N)
    assert choices.shape == (20, 2)
    assert choices[0].tolist() == [0, 1]  # lam 0: best predicted
    assert choices[-1].tolist() == [1, 1]  # large lam: cheapest
    scores = np.array([[1.0, 0.0], [0.0, 1.0]])
    cost, acc = curve(choices, scores, est)
    assert acc[0] == pytest.approx(1.0) and acc[-1] == pytest.approx(0.5)
    assert cost[-1] == pytest.approx(1e-4)


def test_correctness_metrics_perfect_and_uninformative() -> None:
    rng = np.random.default_rng(0)
    scores = (rng.random((200, 3)) < 0.4).astype(float)
    good = correctness_metrics(scores * 0.8 + 0.1, scores)
    assert good["auroc"] == pytest.approx(1.0)
    assert good["brier"] == pytest.approx(0.01)
    flat = correctness_metrics(np.full_like(scores, 0.4), scores)
    assert flat["auroc"] == pytest.approx(0.5)
