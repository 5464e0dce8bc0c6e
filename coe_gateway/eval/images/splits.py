"""Train/test splits shared by every variant (paired): the MMR-Bench protocol and stratified
folds.

- ``mmr``: MMR-Bench's in-distribution split, 20% train / 80% test, seed 42 (as
  ``sklearn.model_selection.train_test_split(train_size=0.2, random_state=42)`` in
  MMR ``data/mllm_data.py``).
- ``f<seed>.<fold>``: 5 folds x 3 seeds, each fold 80% train / 20% test, stratified by
  ``stratum`` (subject x level); strata with fewer members than folds fall back to their
  subject, then to one "rare" stratum.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MMR_SEED = 42
MMR_TRAIN_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    """Row indexes (into the full record set) of one train/test split."""

    name: str
    train: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]

    @property
    def is_mmr(self) -> bool:
        return self.name == "mmr"


def mmr_split(n: int, seed: int = MMR_SEED, train_fraction: float = MMR_TRAIN_FRACTION) -> Split:
    """MMR-Bench's protocol: a seeded random ``train_fraction`` for training, the rest test."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(n), train_size=train_fraction, random_state=seed)
    return Split("mmr", np.sort(train).astype(np.int64), np.sort(test).astype(np.int64))


def strata(subjects: Sequence[str | None], levels: Sequence[object], min_size: int) -> list[str]:
    """One label per record, ``subject|level``; a label held by fewer than ``min_size`` records
    becomes its subject, and a subject still too small becomes ``"rare"``."""
    full = [f"{s}|{lv}" for s, lv in zip(subjects, levels)]
    count = Counter(full)
    coarse = [f if count[f] >= min_size else str(s) for f, s in zip(full, subjects)]
    count2 = Counter(coarse)
    return [c if count2[c] >= min_size else "rare" for c in coarse]


def stratified_folds(labels: Sequence[str], n_folds: int = 5,
                     seeds: Sequence[int] = (0, 1, 2)) -> list[Split]:
    """``n_folds`` x ``len(seeds)`` splits, named ``f<seed>.<fold>``; each fold's test part is
    1/n_folds of the records, stratified by ``labels``."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(labels)
    out = []
    for seed in seeds:
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        for k, (train, test) in enumerate(folds.split(np.zeros(len(y)), y)):
            out.append(Split(f"f{seed}.{k}", train.astype(np.int64), test.astype(np.int64)))
    return out


def all_splits(subjects: Sequence[str | None], levels: Sequence[object], n_folds: int = 5,
               seeds: Sequence[int] = (0, 1, 2)) -> list[Split]:
    """The MMR split first, then the stratified folds."""
    labels = strata(subjects, levels, n_folds)
    return [mmr_split(len(labels)), *stratified_folds(labels, n_folds, seeds)]
