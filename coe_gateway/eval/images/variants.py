"""Feature variants and controls: which image blocks a router sees, fused how, and what is
done to them.

A :class:`Variant` is (feature set, fusion, control). ``T`` is the router on text only (the
same router class with ``features=[]``: the baseline of every comparison). Controls act on
the image blocks only:

- ``shuffled``: image rows permuted across queries, separately within train and within test
  (seeded): the image no longer belongs to its question;
- ``blank``: every image replaced by the features of one blank white 1024x768 image;
- ``text-at-test``: trained on text + image, tested with the image absent (MMR-Bench's mode
  21): the router's text fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

FEATURE_SETS: Mapping[str, tuple[str, ...]] = {
    "T": (), "px": ("pixels",), "ocr": ("ocr",), "stat": ("stats",),
    "all": ("pixels", "ocr", "stats"),
}
FUSIONS = ("mean", "concat", "adaptive")
CONTROLS = ("shuffled", "blank", "text-at-test")
OWN_FUSION = frozenset({"image-cmr"})  # routers whose attention is their fusion
PRIMARY_SET, PRIMARY_FUSION = "all", "concat"


@dataclass(frozen=True)
class Variant:
    """One router input configuration."""

    feature_set: str  # a key of FEATURE_SETS
    fusion: str  # mean | concat | adaptive | own
    control: str | None = None

    @property
    def features(self) -> tuple[str, ...]:
        return FEATURE_SETS[self.feature_set]

    @property
    def name(self) -> str:
        if not self.features:
            return "T"
        base = f"T+{self.feature_set}" + ("" if self.fusion == "own" else f"-{self.fusion}")
        return base if self.control is None else f"{base}/{self.control}"

    @property
    def fit_key(self) -> str:
        """Variants that share one fitted router (text-at-test reuses the trained one)."""
        return self.name.replace("/text-at-test", "")


def variants_for(kind: str, feature_sets: Sequence[str], fusions: Sequence[str],
                 controls: Sequence[str]) -> list[Variant]:
    """T, every feature set x fusion (one per set for routers with their own fusion), and
    each control on the primary variant (all features, else the last set; concat, own
    fusion for CMR)."""
    own = kind in OWN_FUSION
    out = [Variant("T", "own" if own else fusions[0] if fusions else "concat")]
    for fs in feature_sets:
        if fs == "T":
            continue
        out += [Variant(fs, "own")] if own else [Variant(fs, f) for f in fusions]
    primary_fusion = "own" if own else PRIMARY_FUSION
    sets = [fs for fs in feature_sets if fs != "T"]
    primary = PRIMARY_SET if PRIMARY_SET in sets or not sets else sets[-1]
    out += [Variant(primary, primary_fusion, c) for c in controls]
    return out


def permuted(blocks: Mapping[str, np.ndarray], present: np.ndarray, seed: int
             ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The image blocks (N, D_k) and presence (N,) with rows permuted (one permutation for
    every kind, so an image's features stay together)."""
    perm = np.random.default_rng(seed).permutation(len(present))
    return {k: v[perm] for k, v in blocks.items()}, present[perm]


def blanked(blocks: Mapping[str, np.ndarray], blank: Mapping[str, np.ndarray]
            ) -> dict[str, np.ndarray]:
    """Every row replaced by the blank image's features (blank: {kind: (D_k,)})."""
    return {k: np.tile(blank[k].astype(v.dtype), (len(v), 1)) for k, v in blocks.items()}


def control_blocks(
    control: str | None, blocks: Mapping[str, np.ndarray], present: np.ndarray,
    blank: Mapping[str, np.ndarray], seed: int, at_test: bool,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The image blocks and presence one side (train or test) of a split sees."""
    if control == "shuffled":
        return permuted(blocks, present, seed + (1 if at_test else 0))
    if control == "blank":
        return blanked(blocks, blank), np.ones_like(present)
    if control == "text-at-test" and at_test:
        return ({k: np.zeros_like(v) for k, v in blocks.items()},
                np.zeros_like(present))
    return dict(blocks), present.copy()
