"""Training the learned quality predictors (torch, at fit time only) and calibrating them.

A predictor maps query features x (N, D) to one logit per expert (N, E); the target is the
expert's score (0..1; a fractional score is a soft label), missing results are masked out of
the binary cross-entropy. Training holds out ``val_fraction`` of the queries for early
stopping, then fits one temperature T on that split (logits / T) to minimise its
cross-entropy; the expected calibration error before and after is kept in the router's config.

The trained weights are returned as numpy arrays: prediction is numpy only, so a loaded
router never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 60
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    val_fraction: float = 0.1
    patience: int = 6
    seed: int = 0
    threads: int = 2

    @classmethod
    def pick(cls, options: dict[str, Any]) -> TrainOptions:
        """Take this dataclass's fields out of ``options`` (removing them)."""
        return cls(**{k: options.pop(k) for k in list(options) if k in cls.__dataclass_fields__})


def sigmoid(z: np.ndarray) -> np.ndarray:
    p: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
    return p


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): sum over equal-width probability bins of
    (bin share) * |mean predicted - mean observed|; entries where y is NaN are ignored."""
    keep = np.isfinite(y) & np.isfinite(p)
    p, y = p[keep], y[keep]
    if not len(p):
        return math.nan
    edges = np.minimum((p * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        sel = edges == b
        if sel.any():
            err += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(err)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 minimising masked binary cross-entropy of sigmoid(logits / T) (grid + refine)."""
    keep = np.isfinite(y)
    z, t = logits[keep], y[keep]

    def loss(temp: float) -> float:
        p = np.clip(sigmoid(z / temp), 1e-7, 1 - 1e-7)
        return float(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean())

    grid = np.exp(np.linspace(np.log(0.25), np.log(4.0), 41))
    best = float(grid[np.argmin([loss(g) for g in grid])])
    fine = best * np.exp(np.linspace(-0.05, 0.05, 21))
    return float(fine[np.argmin([loss(g) for g in fine])])


def split_val(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction)) if n >= 20 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def train_logits_model(
    module: Any, x: np.ndarray, y: np.ndarray, opts: TrainOptions,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train ``module`` (torch, x (B, D) -> logits (B, E)) on x (N, D), y (N, E) (NaN masked).

    Returns ``{"temperature", "ece_val_raw", "ece_val", "val_loss", "epochs"}``; the module is
    left with its best-validation weights.
    """
    import torch

    torch.manual_seed(opts.seed)
    torch.set_num_threads(max(1, opts.threads))
    tr, va = split_val(len(x), opts.val_fraction, opts.seed)
    xt = torch.from_numpy(np.asarray(x, np.float32))
    yt = torch.from_numpy(np.nan_to_num(y).astype(np.float32))
    mt = torch.from_numpy(np.isfinite(y).astype(np.float32))
    optim = torch.optim.AdamW(module.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")

    def masked(idx: Any) -> Any:
        loss = bce(module(xt[idx]), yt[idx]) * mt[idx]
        return loss.sum() / mt[idx].sum().clamp(min=1.0)

    gen = torch.Generator().manual_seed(opts.seed)
    best, best_state, stale, epoch = math.inf, None, 0, 0
    for epoch in range(1, opts.epochs + 1):
        module.train()
        order = torch.from_numpy(tr)[torch.randperm(len(tr), generator=gen)]
        for start in range(0, len(order), opts.batch_size):
            optim.zero_grad()
            masked(order[start:start + opts.batch_size]).backward()
            optim.step()
        module.eval()
        with torch.no_grad():
            val = float(masked(torch.from_numpy(va if len(va) else tr)))
        if progress is not None:
            progress(epoch, opts.epochs)
        if val < best - 1e-5:
            best, stale = val, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            stale += 1
            if stale >= opts.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    idx = va if len(va) else tr
    with torch.no_grad():
        logits = module(xt[idx]).numpy()
    temp = fit_temperature(logits, y[idx])
    return {"temperature": round(temp, 4), "val_loss": round(best, 5), "epochs": epoch,
            "ece_val_raw": round(expected_calibration_error(sigmoid(logits), y[idx]), 4),
            "ece_val": round(expected_calibration_error(sigmoid(logits / temp), y[idx]), 4)}
