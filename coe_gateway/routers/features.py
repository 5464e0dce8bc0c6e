"""Query features shared by the difficulty-aware routers: surface features of the text, the
category (given or classified) and a predicted difficulty.

Difficulty, as in item response theory: a query's difficulty is what makes every model
likelier to fail it. Its observable proxy is the mean score of the training models on that
query; :class:`DifficultyModel` predicts it from the embedding, the category probabilities
and the surface features with ridge regression (cross-fitted on the training set, so the
training rows see out-of-fold predictions, as unseen queries will).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

OPTION = re.compile(r"^\(?[A-J][.)] ", re.MULTILINE)
N_TEXT_FEATURES = 8


def text_features(texts: Sequence[str]) -> np.ndarray:
    """(N, 8) raw surface features: log chars of the question (text minus options), number
    of options, log mean option length, digit share, LaTeX/dollar sign present, share of
    options with digits, code present, log line count."""
    out = np.zeros((len(texts), N_TEXT_FEATURES), dtype=np.float64)
    for i, t in enumerate(texts):
        lines = t.split("\n")
        opts = [ln for ln in lines if OPTION.match(ln)]
        question = len(t) - sum(len(o) + 1 for o in opts)
        out[i] = [
            np.log1p(max(question, 0)), len(opts),
            np.log1p(np.mean([len(o) for o in opts])) if opts else 0.0,
            sum(ch.isdigit() for ch in t) / max(len(t), 1),
            float("$" in t or "\\frac" in t),
            np.mean([any(ch.isdigit() for ch in o) for o in opts]) if opts else 0.0,
            float("```" in t or "def " in t or "return " in t),
            np.log1p(len(lines)),
        ]
    return out


@dataclass
class Standardiser:
    """Column-wise (x - mean) / std, fitted on training rows."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardiser:
        return cls(x.mean(axis=0), x.std(axis=0) + 1e-9)

    def __call__(self, x: np.ndarray) -> npt.NDArray[np.float32]:
        z: np.ndarray = (x - self.mean) / self.std
        return z.astype(np.float32)


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge regression (closed form, intercept unpenalised): (coef (F,), intercept)."""
    xm, ym = x.mean(axis=0), float(y.mean())
    xc = x - xm
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return coef.astype(np.float32), float(ym - xm @ coef)


@dataclass
class DifficultyModel:
    """Predicted mean score of the training models on a query, from features z (N, F)."""

    coef: np.ndarray
    intercept: float

    @classmethod
    def fit_crossed(cls, z: np.ndarray, target: np.ndarray, alpha: float = 10.0,
                    folds: int = 5, seed: int = 0) -> tuple[DifficultyModel, np.ndarray]:
        """The model on all rows, and out-of-fold predictions (N,) for the training rows."""
        oof = np.zeros(len(z))
        parts = np.array_split(np.random.default_rng(seed).permutation(len(z)), folds)
        for k in range(folds):
            if len(parts) < 2 or not len(parts[k]):
                break
            train = np.concatenate([p for j, p in enumerate(parts) if j != k])
            coef, b = ridge_fit(z[train], target[train], alpha)
            oof[parts[k]] = z[parts[k]] @ coef + b
        coef, b = ridge_fit(z, target, alpha)
        if len(z) < 2 * folds:
            oof = z @ coef + b
        return cls(coef, b), oof

    def __call__(self, z: np.ndarray) -> np.ndarray:
        pred: np.ndarray = z @ self.coef + self.intercept
        return pred
