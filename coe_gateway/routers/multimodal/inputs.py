"""What an image-aware router reads: text embeddings, image feature blocks and a presence mask.

A :class:`ModalityInputs` holds, for N queries, the text embeddings (N, Dt) (unit rows, from
the router's text encoder), one block (N, Di) per image feature kind (zero rows where the
query has no image) and ``present`` (N,) bool (the row's image features are there). Routers
build it from queries (:meth:`ModalityInputs.from_queries`); the evaluator builds it from
precomputed arrays (the dataclass constructor, or permuted / blanked copies for its controls).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coe_gateway.routers.base import Query
from coe_gateway.routers.embedding import EncoderSpec, embed_texts

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ModalityInputs:
    """text: (N, Dt) float32; blocks: {kind: (N, Di) float32}; present: (N,) bool.

    ``present`` defaults to True where any block row is non-zero (all False without blocks).
    """

    text: np.ndarray
    blocks: Mapping[str, np.ndarray] = field(default_factory=dict)
    present: np.ndarray | None = None

    def __post_init__(self) -> None:
        text = np.asarray(self.text, dtype=np.float32)
        if text.ndim != 2:
            raise ValueError(f"inputs: text must be (N, D), got shape {text.shape}")
        n = len(text)
        blocks = {k: np.asarray(v, dtype=np.float32) for k, v in self.blocks.items()}
        for kind, block in blocks.items():
            if block.ndim != 2 or len(block) != n:
                raise ValueError(f"inputs: block {kind!r} has shape {block.shape}, "
                                 f"expected ({n}, D)")
        if self.present is None:
            present = np.zeros(n, dtype=bool)
            for block in blocks.values():
                present |= np.any(block != 0, axis=1)
        else:
            present = np.asarray(self.present, dtype=bool).reshape(-1)
            if len(present) != n:
                raise ValueError(f"inputs: present has {len(present)} rows, text has {n}")
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "present", present)

    def __len__(self) -> int:
        return int(self.text.shape[0])

    @property
    def mask(self) -> np.ndarray:
        """(N,) bool presence (typed: never None after construction)."""
        assert self.present is not None
        return self.present

    def subset(self, index: np.ndarray | Sequence[int]) -> ModalityInputs:
        """The rows at ``index`` (int indexes or a bool mask)."""
        idx = np.asarray(index)
        return ModalityInputs(self.text[idx], {k: v[idx] for k, v in self.blocks.items()},
                              self.mask[idx])

    def without_images(self) -> ModalityInputs:
        """The same text with every image absent (what a text-only request looks like)."""
        return ModalityInputs(self.text, {k: np.zeros_like(v) for k, v in self.blocks.items()},
                              np.zeros(len(self), dtype=bool))

    def image_matrix(self, kinds: Sequence[str]) -> np.ndarray:
        """(N, sum Di) the blocks of ``kinds`` side by side (KeyError naming a missing one)."""
        missing = [k for k in kinds if k not in self.blocks]
        if missing:
            raise KeyError(f"inputs have no image feature block {missing}; "
                           f"they have {sorted(self.blocks)}")
        if not kinds:
            return np.zeros((len(self), 0), dtype=np.float32)
        return np.concatenate([self.blocks[k] for k in kinds], axis=1)

    @classmethod
    def from_queries(
        cls, queries: Sequence[Query], kinds: Sequence[str],
        encoder: Mapping[str, Any] | EncoderSpec | None = None,
        feature_options: Mapping[str, Mapping[str, Any]] | None = None,
        dims: Mapping[str, int] | None = None, progress: Progress | None = None,
    ) -> ModalityInputs:
        """Text through ``embed_texts``; each query's image blocks from ``q.image_features``
        when it has every kind, else from ``q.image`` (one batched featurizer call for all such
        queries), else absent. ``dims`` gives the block widths (a trained router knows them);
        missing ones are asked of the extractor registry."""
        text = embed_texts([q.text for q in queries], encoder)
        n, kinds = len(queries), list(kinds)
        widths = {k: int(dims[k]) if dims and k in dims else _feature_dim(k, feature_options)
                  for k in kinds}
        blocks = {k: np.zeros((n, widths[k]), dtype=np.float32) for k in kinds}
        present = np.zeros(n, dtype=bool)
        if not kinds:
            return cls(text, blocks, present)
        from_paths: list[int] = []
        for i, q in enumerate(queries):
            given = q.image_features
            if given is not None and all(k in given for k in kinds):
                for k in kinds:
                    blocks[k][i] = _vector(given[k], widths[k], k)
                present[i] = True
            elif q.image:
                from_paths.append(i)
        if from_paths:
            _fill_from_paths([queries[i].image for i in from_paths], from_paths, kinds,
                             feature_options, blocks, present, progress)
        return cls(text, blocks, present)


def _vector(value: np.ndarray, width: int, kind: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float32).reshape(-1)  # (D,)
    if v.shape != (width,):
        raise ValueError(f"image_features[{kind!r}] has {v.size} values, the router expects "
                         f"{width}")
    return v


def _feature_dim(kind: str, options: Mapping[str, Mapping[str, Any]] | None) -> int:
    from coe_gateway.vision.features.base import feature_dim

    return feature_dim(kind, (options or {}).get(kind))


def _fill_from_paths(paths: Sequence[str | None], rows: Sequence[int], kinds: Sequence[str],
                     options: Mapping[str, Mapping[str, Any]] | None,
                     blocks: dict[str, np.ndarray], present: np.ndarray,
                     progress: Progress | None) -> None:
    """Write the featurizer's vectors of ``paths`` into ``blocks`` at ``rows`` (in place)."""
    from coe_gateway.vision.features.featurizer import image_features_for_paths

    batch = image_features_for_paths(list(paths), list(kinds), options=options,
                                     progress=progress)
    idx = np.asarray(rows, dtype=np.int64)
    for k in kinds:
        got = np.asarray(batch.features[k], dtype=np.float32)  # (len(rows), Dk)
        if got.shape != (len(idx), blocks[k].shape[1]):
            raise ValueError(f"image features {k!r}: the featurizer gave {got.shape}, "
                             f"expected ({len(idx)}, {blocks[k].shape[1]})")
        blocks[k][idx] = got
    present[idx] = np.asarray(batch.present, dtype=bool)
