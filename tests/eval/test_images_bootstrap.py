"""Paired bootstrap of the image evaluation and Holm's adjustment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coe_gateway.eval.images import bootstrap
from coe_gateway.eval.images.frontier import Reference, curve, curve_metrics


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = (rng.random((n, 2)) < 0.5).astype(float)  # (N, 2)
    real = np.tile([1e-4, 1e-3], (n, 1))
    return scores, real


def test_resample_weights_sum_to_n_and_are_seeded() -> None:
    w = bootstrap.resample_weights(50, 7, seed=3)
    assert w.shape == (7, 50) and np.all(w.sum(axis=1) == 50)
    assert np.array_equal(w, bootstrap.resample_weights(50, 7, seed=3))


def test_interval_covers_a_known_accuracy_difference() -> None:
    # variant "good" picks the right model on a known 30% of rows where "T" picks wrong,
    # everywhere along its (one-lam) curve: its Ps gain is exactly that share
    n = 600
    scores, real = _data(n, 0)
    t_choice = np.zeros((1, n), dtype=np.int16)  # always model 0
    good = t_choice.copy()
    fix = (scores[:, 0] == 0) & (scores[:, 1] == 1)
    good[0, fix] = 1
    truth = float(fix.mean())
    data = bootstrap.Resampled(scores, real, 0, bootstrap.resample_weights(n, 1000, 1))
    ref = Reference("0", float(scores[:, 0].mean()), 1e-4, 1e-4, 1e-3)
    est = {k: curve_metrics(*curve(c, scores, real), ref) for k, c in
           (("T", t_choice), ("good", good))}
    d = bootstrap.paired_deltas(data, {"T": t_choice, "good": good}, {"good": "T"}, est)
    ps = d["good"]["ps"]
    assert ps.estimate == pytest.approx(truth)
    assert ps.low < truth < ps.high
    assert ps.low > 0 and ps.p < 0.01
    # the same choices against themselves: exactly zero, p = 1
    same = bootstrap.paired_deltas(data, {"T": t_choice, "U": t_choice.copy()}, {"U": "T"},
                                   {"T": est["T"], "U": est["T"]})
    assert same["U"]["ps"].low == 0.0 == same["U"]["ps"].high
    assert same["U"]["ps"].p == 1.0


def test_holm_is_step_down_and_monotone() -> None:
    adj = bootstrap.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": math.nan})
    assert adj["a"] == pytest.approx(0.03)
    assert adj["c"] == pytest.approx(0.06)
    assert adj["b"] == pytest.approx(0.06)  # max(0.06, 1 x 0.04)
    assert math.isnan(adj["d"])
