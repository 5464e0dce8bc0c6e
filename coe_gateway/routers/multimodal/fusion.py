"""Fusing the text embedding with the image feature blocks into one vector per query.

A :class:`Fusion` is fitted on the training rows only and saved with the router. Every method
first puts the image kinds side by side (pixels, ocr, stats, ...: one image vector) and
standardises each column (train mean / std; a constant column becomes 0). Then:

- ``mean``: the standardised image vector is projected to the text dimension Dt by a PCA
  fitted on train and L2-normalised: i; fused = normalise((t + i) / 2). MMR-Bench averages too,
  but truncates both vectors to the smaller dimension: that keeps an arbitrary first slice of
  an image feature (EfficientNet channels have no order; the first 384 of ``ocr`` would drop
  its box statistics; ``stats`` has 14 columns and would cut the text down to 14). PCA keeps
  the image directions that vary most, and zero-pads when the image has fewer than Dt.
- ``concat``: [t, s_1 z_1, ..., s_k z_k] where z_b is kind b's standardised block. Rule: every
  modality carries the same total variance as the text: V_t = sum of the text columns'
  variances on train; a standardised block's total V_b is its count of non-constant columns
  (~D_b, so s_b z_b ~ z_b / sqrt(D_b) * sqrt(V_t)); s_b = sqrt(V_t / V_b) (0 for a block
  constant on train). Not normalised (kNN normalises for its cosine).
- ``adaptive``: MMR-Bench's ``kmeansnew`` fusion of t and the PCA-projected i, with the
  modality means and norm statistics fitted on train (MMR computes them on whichever set it
  encodes): per-sample confidence c_m = 0.5 (cos(x_m, mu_m) + 1) / 2 + 0.5 sigmoid((|x_m| -
  mean|x_m|) / std|x_m|); weights w = softmax(5 c); fused = w_t t + w_i i + 0.5 (t * i) +
  0.5 |t - i|, L2-normalised.
- ``tokens`` (internal, the cross-modal router's): [t, z_1, ..., z_k, present] unscaled; the
  router's attention does the fusing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coe_gateway.routers.embedding import normalise
from coe_gateway.routers.multimodal.inputs import ModalityInputs
from coe_gateway.routers.neural import sigmoid

METHODS = ("mean", "concat", "adaptive")
INTERNAL_METHODS = ("tokens",)
ETA = 5.0  # MMR-Bench's softmax sharpness for the adaptive weights
EPS = 1e-8


def check_method(method: str) -> str:
    """``method`` if it is a fusion (ValueError naming the known ones)."""
    if method not in METHODS + INTERNAL_METHODS:
        raise ValueError(f"fusion must be one of {list(METHODS)}, got {method!r}")
    return method


@dataclass(frozen=True)
class Fusion:
    """A fitted fusion: see the module docstring for each method.

    mean, std:      (Di,) standardisation of the concatenated image columns
    scale:          (k,) concat: per-kind scale s_b
    components:     (P, Di) PCA directions (mean/adaptive; P <= Dt), pca_mean (Di,)
    centers:        (2, Dt) adaptive: train means of t and i; norms (4,) mean/std of |t|, |i|
    """

    method: str
    kinds: tuple[str, ...]
    dims: tuple[int, ...]
    text_dim: int
    mean: np.ndarray
    std: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    pca_mean: np.ndarray
    centers: np.ndarray
    norms: np.ndarray

    @property
    def out_dim(self) -> int:
        """Width of :meth:`transform`'s rows."""
        if self.method == "concat":
            return self.text_dim + sum(self.dims)
        if self.method == "tokens":
            return self.text_dim + sum(self.dims) + 1
        return self.text_dim

    @property
    def layout(self) -> tuple[int, ...]:
        """Token widths of a ``tokens`` row (text, then each kind); the flat width otherwise."""
        return (self.text_dim, *self.dims) if self.method == "tokens" else (self.out_dim,)

    @classmethod
    def fit(cls, inputs: ModalityInputs, kinds: Sequence[str], method: str,
            seed: int = 0) -> Fusion:
        """Fit on ``inputs`` (the training rows that have images)."""
        check_method(method)
        kinds = tuple(kinds)
        if not kinds:
            raise ValueError("fusion: needs at least one image feature kind")
        img = inputs.image_matrix(kinds).astype(np.float64)  # (N, Di)
        mean = img.mean(axis=0)
        std = img.std(axis=0)
        std = np.where(std > 1e-6, std, 1.0)
        z = (img - mean) / std  # (N, Di)
        dims = tuple(int(inputs.blocks[k].shape[1]) for k in kinds)
        dt = int(inputs.text.shape[1])
        scale = _concat_scales(inputs.text, z, dims)
        components, pca_mean = _pca(z, dt, seed) if method in ("mean", "adaptive") else (
            np.zeros((0, z.shape[1])), np.zeros(z.shape[1]))
        fused = cls(method, kinds, dims, dt, mean, std, scale, components, pca_mean,
                    np.zeros((2, dt)), np.zeros(4))
        if method != "adaptive":
            return fused
        t, i = inputs.text.astype(np.float64), fused.project(z)
        n_t, n_i = np.linalg.norm(t, axis=1), np.linalg.norm(i, axis=1)
        return cls(method, kinds, dims, dt, mean, std, scale, components, pca_mean,
                   np.stack([t.mean(axis=0), i.mean(axis=0)]),
                   np.array([n_t.mean(), n_t.std() + EPS, n_i.mean(), n_i.std() + EPS]))

    def standardise(self, inputs: ModalityInputs) -> np.ndarray:
        """(N, Di) the image columns standardised with the train statistics."""
        img = inputs.image_matrix(self.kinds).astype(np.float64)
        z: np.ndarray = (img - self.mean) / self.std
        return z

    def project(self, z: np.ndarray) -> np.ndarray:
        """(N, Dt) unit rows: standardised image z (N, Di) through the PCA, zero-padded."""
        p = (z - self.pca_mean) @ self.components.T  # (N, P)
        out = np.zeros((len(z), self.text_dim))
        out[:, :p.shape[1]] = p
        return normalise(out).astype(np.float64)

    def transform(self, inputs: ModalityInputs) -> np.ndarray:
        """(N, out_dim) float32 fused rows of ``inputs``."""
        t = inputs.text.astype(np.float64)  # (N, Dt)
        if t.shape[1] != self.text_dim:
            raise ValueError(f"fusion: text embeddings have {t.shape[1]} columns, the router "
                             f"was trained on {self.text_dim}")
        z = self.standardise(inputs)  # (N, Di)
        out: np.ndarray
        if self.method == "tokens":
            out = np.concatenate([t, z, inputs.mask[:, None]], axis=1)
            return out.astype(np.float32)
        if self.method == "concat":
            edges = np.cumsum((0, *self.dims))
            parts = [z[:, a:b] * s for a, b, s in zip(edges[:-1], edges[1:], self.scale)]
            out = np.concatenate([t, *parts], axis=1)
            return out.astype(np.float32)
        i = self.project(z)  # (N, Dt)
        if self.method == "mean":
            return normalise((t + i) / 2.0)
        return self._adaptive(t, i)

    def _adaptive(self, t: np.ndarray, i: np.ndarray) -> np.ndarray:
        """MMR-Bench ``kmeansnew``: confidence-weighted sum plus product and difference."""
        c_t = self._confidence(t, self.centers[0], self.norms[0], self.norms[1])  # (N,)
        c_i = self._confidence(i, self.centers[1], self.norms[2], self.norms[3])  # (N,)
        e_t, e_i = np.exp(ETA * c_t), np.exp(ETA * c_i)
        w_t, w_i = (e_t / (e_t + e_i + EPS))[:, None], (e_i / (e_t + e_i + EPS))[:, None]
        fused = w_t * t + w_i * i + 0.5 * (t * i) + 0.5 * np.abs(t - i)  # (N, Dt)
        return normalise(fused)

    @staticmethod
    def _confidence(x: np.ndarray, center: np.ndarray, norm_mean: float,
                    norm_std: float) -> np.ndarray:
        """(N,) 0.5 * cosine-to-center mapped to [0, 1] + 0.5 * sigmoid(z-scored norm)."""
        norm = np.linalg.norm(x, axis=1)
        cos = (x @ center) / (norm * np.linalg.norm(center) + EPS)
        proto = (cos + 1.0) / 2.0
        size = sigmoid((norm - norm_mean) / norm_std)
        conf: np.ndarray = np.clip(0.5 * proto + 0.5 * size, 0.0, 1.0)
        return conf

    # -- persistence -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"method": self.method, "kinds": list(self.kinds), "dims": list(self.dims),
                "text_dim": self.text_dim}

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(getattr(self, name), dtype=np.float64) for name in _ARRAYS}

    @classmethod
    def from_saved(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Fusion:
        missing = [a for a in _ARRAYS if a not in arrays]
        if missing:
            raise ValueError(f"fusion: saved arrays {missing} are missing")
        return cls(str(config["method"]), tuple(config["kinds"]),
                   tuple(int(d) for d in config["dims"]), int(config["text_dim"]),
                   **{a: np.asarray(arrays[a], dtype=np.float64) for a in _ARRAYS})


_ARRAYS = ("mean", "std", "scale", "components", "pca_mean", "centers", "norms")


def _concat_scales(text: np.ndarray, z: np.ndarray, dims: Sequence[int]) -> np.ndarray:
    """(k,) s_b = sqrt(V_t / V_b): each standardised block gets the text's total variance."""
    v_t = float(text.astype(np.float64).var(axis=0).sum())
    edges = np.cumsum((0, *dims))
    v_b = np.array([z[:, a:b].var(axis=0).sum() for a, b in zip(edges[:-1], edges[1:])])
    return np.where(v_b > 1e-8, np.sqrt(v_t / np.maximum(v_b, 1e-8)), 0.0)


def _pca(z: np.ndarray, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA of z (N, Di) to at most ``dims`` components: (components (P, Di), mean (Di,))."""
    from sklearn.decomposition import PCA

    if z.var(axis=0).sum() < 1e-12:  # a constant image (the blanked control): nothing to keep
        return np.zeros((1, z.shape[1])), z.mean(axis=0)
    p = max(1, min(dims, z.shape[0], z.shape[1]))
    pca = PCA(n_components=p, random_state=seed).fit(z)
    return pca.components_.astype(np.float64), pca.mean_.astype(np.float64)
