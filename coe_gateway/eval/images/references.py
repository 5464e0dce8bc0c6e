"""Reference routers and points every image-aware variant is read against.

- ``single``: every query gets the train accuracy of each model as its predicted quality
  (constant rows), swept by the same policy: the frontier of single models chosen on train.
- ``subject-prior``: per-subject (``category``) mean train scores as predicted quality
  (subjects unseen in train get the overall mean), swept by the same policy: tests whether
  an image only re-encodes the subject.
- points: the best single model (chosen on train by accuracy), the oracle, random routing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coe_gateway.eval import metrics


def train_means(scores: np.ndarray) -> np.ndarray:
    """(E,) each model's mean score on the train rows (scores: (N_train, E), missing = 0)."""
    out: np.ndarray = scores.mean(axis=0)
    return out


def best_single(train_scores: np.ndarray, train_est: np.ndarray) -> int:
    """The column of the best model on train by accuracy, the cheaper (estimated) among ties."""
    acc, cost = train_means(train_scores), train_est.mean(axis=0)
    return int(np.lexsort((cost, -acc))[0])


def single_quality(train_scores: np.ndarray, n_test: int) -> np.ndarray:
    """(N_test, E) the train means repeated for every test query."""
    return np.tile(train_means(train_scores), (n_test, 1))


def subject_prior_quality(train_scores: np.ndarray, train_subjects: Sequence[str | None],
                          test_subjects: Sequence[str | None]) -> np.ndarray:
    """(N_test, E) per-subject mean train scores; the overall mean for unseen subjects."""
    overall = train_means(train_scores)
    subj = np.asarray([str(s) for s in train_subjects])
    table = {s: train_scores[subj == s].mean(axis=0) for s in np.unique(subj)}
    return np.stack([table.get(str(s), overall) for s in test_subjects])


def reference_points(scores: np.ndarray, real: np.ndarray, best: int, seed: int
                     ) -> dict[str, dict[str, float]]:
    """{name: {"accuracy", "cost"}} on the test rows: best single (train-chosen), oracle,
    random (seeded), and every single model (``model:<column>``)."""
    n, e = scores.shape
    out = {f"model:{j}": {"accuracy": float(scores[:, j].mean()), "cost": float(real[:, j].mean())}
           for j in range(e)}
    out["best-single"] = dict(out[f"model:{best}"])
    oracle = metrics.oracle_choice(scores, real)
    out["oracle"] = {"accuracy": metrics.accuracy(scores, oracle),
                     "cost": metrics.mean_cost(real, oracle)}
    rand = metrics.random_choice(n, e, seed)
    out["random"] = {"accuracy": metrics.accuracy(scores, rand),
                     "cost": metrics.mean_cost(real, rand)}
    return out
