"""Splits of the image evaluation: MMR protocol, stratified folds, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np

from coe_gateway.eval.images.splits import all_splits, mmr_split, strata


def _labels(n: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(0)
    subjects = [f"s{int(i)}" for i in rng.integers(0, 4, n)]
    levels = [int(i) for i in rng.integers(1, 4, n)]
    return subjects, levels


def test_mmr_split_is_20_80_and_deterministic() -> None:
    a, b = mmr_split(1000), mmr_split(1000)
    assert len(a.train) == 200 and len(a.test) == 800
    assert np.array_equal(a.train, b.train)
    assert not set(a.train) & set(a.test)


def test_folds_partition_each_seed_and_are_stratified() -> None:
    subjects, levels = _labels(600)
    splits = all_splits(subjects, levels, n_folds=5, seeds=(0, 1))
    assert [s.name for s in splits][:3] == ["mmr", "f0.0", "f0.1"] and len(splits) == 11
    labels = np.array(strata(subjects, levels, 5))
    overall = Counter(labels)
    for seed in ("f0", "f1"):
        folds = [s for s in splits if s.name.startswith(seed + ".")]
        tests = np.concatenate([f.test for f in folds])
        assert sorted(tests.tolist()) == list(range(600))  # each record tested once per seed
        for f in folds:
            got = Counter(labels[f.test])
            for lab, count in overall.items():
                assert abs(got[lab] - count / 5) <= 1  # stratified
    again = all_splits(subjects, levels, n_folds=5, seeds=(0, 1))
    assert all(np.array_equal(x.test, y.test) for x, y in zip(splits, again))
    assert not np.array_equal(splits[1].test, splits[6].test)  # seeds differ


def test_rare_strata_fall_back_to_subject_then_rare() -> None:
    # a|1 is big enough; a|2 (3) and a|3 (2) pool into "a" (5); b and c stay too small
    subjects = ["a"] * 13 + ["b"] * 3 + ["c"] * 2
    levels = [1] * 8 + [2] * 3 + [3] * 2 + [1, 2, 3] + [1, 1]
    got = strata(subjects, levels, 5)
    assert got[:8] == ["a|1"] * 8
    assert got[8:13] == ["a"] * 5 and got[13:] == ["rare"] * 5
