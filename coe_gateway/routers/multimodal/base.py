"""The shared frame of the image-aware routers: options, text fallback, fusion, persistence.

A router kind supplies a :class:`Head` (features (N, D) -> per-expert quality). The router
fits two heads on the same training rows with the same options: the *text head* on the text
embeddings of every row, and, when ``features`` names image kinds, the *image head* on the
fused features (:mod:`coe_gateway.routers.multimodal.fusion`) of the rows that have images.
A query with image features goes to the image head; one without (a text-only request, a
record without image) to the text head. With ``features: []`` only the text head exists: the
text-only router is this same code, and an image-aware router routes text-only queries exactly
as it does.

Saved: ``router.json`` (options, each head's config, the fusion's config) and
``weights.safetensors`` (arrays prefixed ``text.``, ``image.``, ``fusion.``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from coe_gateway.records import RecordSet
from coe_gateway.routers.base import Prediction, Query, Router
from coe_gateway.routers.common import confidence, expert_columns, score_matrix
from coe_gateway.routers.embedding import EncoderSpec
from coe_gateway.routers.neural import TrainOptions
from coe_gateway.routers.multimodal.fusion import Fusion, check_method
from coe_gateway.routers.multimodal.inputs import ModalityInputs, Progress

R = TypeVar("R", bound="MultimodalRouter")


class Head(ABC):
    """A fitted predictor from feature rows to per-expert quality in 0..1."""

    @classmethod
    @abstractmethod
    def fit(cls, x: np.ndarray, scores: np.ndarray, layout: tuple[int, ...],
            options: Mapping[str, Any], progress: Progress | None = None) -> Head:
        """Fit on x (N, D) and scores (N, E) (NaN = no result). ``layout``: the widths of the
        row's token blocks (one block for a flat feature vector)."""

    @abstractmethod
    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(quality (B, E) in 0..1, evidence (B, E) or None) for x (B, D)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON hyper-parameters and fit information."""

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays (never pickle)."""

    @classmethod
    @abstractmethod
    def load(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Head:
        """Rebuild from :meth:`config` and :meth:`arrays`."""


def check_kinds(features: Sequence[str]) -> list[str]:
    """``features`` as a list of known image feature kinds (ValueError naming the bad one)."""
    from coe_gateway.vision.features.base import FEATURE_KINDS

    kinds = [features] if isinstance(features, str) else list(features)
    unknown = [k for k in kinds if k not in FEATURE_KINDS]
    if unknown:
        raise ValueError(f"features: unknown image feature kind(s) {unknown}; "
                         f"known: {sorted(FEATURE_KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"features: {kinds} names a kind twice")
    return kinds


def train_options(options: Mapping[str, Any]) -> TrainOptions:
    """The :class:`TrainOptions` fields found in a torch head's ``options``."""
    return TrainOptions.pick({k: v for k, v in options.items()
                              if k in TrainOptions.__dataclass_fields__})


class MultimodalRouter(Router):
    """Text head + optional fusion and image head. Subclasses set ``kind``, ``head`` and
    ``defaults`` (the head's options and their default values)."""

    head: ClassVar[type[Head]]
    defaults: ClassVar[Mapping[str, Any]]
    fixed_fusion: ClassVar[str | None] = None  # a router that fuses by itself (CMR)
    reads_images: ClassVar[bool] = True  # train_router precomputes the image features

    def __init__(
        self, experts: Sequence[str], features: Sequence[str] = (), fusion: str = "mean",
        encoder: Mapping[str, Any] | EncoderSpec | None = None,
        feature_options: Mapping[str, Mapping[str, Any]] | None = None,
        options: Mapping[str, Any] | None = None, text_head: Head | None = None,
        image_head: Head | None = None, fusion_state: Fusion | None = None,
    ) -> None:
        super().__init__(experts)
        self.features = check_kinds(features)
        self.fusion = check_method(fusion)
        self.encoder = EncoderSpec.from_config(encoder)
        self.feature_options = {k: dict(v) for k, v in (feature_options or {}).items()}
        self.options = self.head_options(options or {})
        if text_head is None or (self.features and (image_head is None or fusion_state is None)):
            raise ValueError(f"{self.kind}: a trained router needs its fitted heads "
                             f"(use fit, fit_inputs or a saved directory)")
        self.text_head, self.image_head, self.fusion_state = text_head, image_head, fusion_state

    @classmethod
    def head_options(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """The head's options over its defaults (ValueError naming unknown ones)."""
        unknown = sorted(set(given) - set(cls.defaults))
        if unknown:
            raise ValueError(f"{cls.kind}: unknown option(s) {unknown}; known: "
                             f"{sorted(cls.defaults)} and features, fusion, encoder, "
                             f"feature_options")
        return {**cls.defaults, **given}

    # -- training --------------------------------------------------------------------------
    @classmethod
    def fit(cls: type[R], train: RecordSet, experts: Sequence[str] | None = None,
            progress: Progress | None = None, **options: Any) -> R:
        """Embed the training texts, read their image features, fit (see :meth:`fit_inputs`)."""
        names = expert_columns(train, experts)
        kinds = check_kinds(options.get("features", ()))
        inputs = ModalityInputs.from_queries(train.queries(), kinds, options.get("encoder"),
                                             options.get("feature_options"))
        return cls.fit_inputs(inputs, score_matrix(train, names), names, progress=progress,
                              **options)

    @classmethod
    def fit_inputs(cls: type[R], inputs: ModalityInputs, scores: np.ndarray,
                   experts: Sequence[str], progress: Progress | None = None,
                   features: Sequence[str] = (), fusion: str = "mean",
                   encoder: Mapping[str, Any] | EncoderSpec | None = None,
                   feature_options: Mapping[str, Mapping[str, Any]] | None = None,
                   **options: Any) -> R:
        """Fit on precomputed inputs and scores (N, E): the text head on every row, the
        fusion and image head on the rows with images (what the evaluator calls)."""
        kinds, method = check_kinds(features), check_method(fusion)
        head_opts = cls.head_options(options)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(inputs), len(experts)):
            raise ValueError(f"{cls.kind}: scores {scores.shape} do not match {len(inputs)} "
                             f"inputs x {len(experts)} experts")
        text_head = cls.head.fit(inputs.text, scores, (inputs.text.shape[1],), head_opts,
                                 progress)
        image_head, state = None, None
        if kinds:
            rows = inputs.mask
            if not rows.any():
                raise ValueError(f"{cls.kind}: features {kinds} asked for, but no training row "
                                 f"has image features")
            train_rows = inputs.subset(rows)
            state = Fusion.fit(train_rows, kinds, cls.fixed_fusion or method,
                               int(head_opts.get("seed", 0)))
            image_head = cls.head.fit(state.transform(train_rows), scores[rows], state.layout,
                                      head_opts, progress)
        return cls(experts, features=kinds, fusion=method, encoder=encoder,
                   feature_options=feature_options, options=head_opts, text_head=text_head,
                   image_head=image_head, fusion_state=state)

    # -- prediction ------------------------------------------------------------------------
    @property
    def image_kinds(self) -> tuple[str, ...]:
        """The image feature kinds the image head reads (the gateway computes them first)."""
        return tuple(self.features)

    @property
    def image_feature_options(self) -> Mapping[str, Mapping[str, Any]]:
        return self.feature_options

    def inputs(self, queries: Sequence[Query]) -> ModalityInputs:
        """The queries' text embeddings and image blocks (as the router was trained)."""
        dims = (dict(zip(self.fusion_state.kinds, self.fusion_state.dims))
                if self.fusion_state is not None else None)
        return ModalityInputs.from_queries(queries, self.features, self.encoder,
                                           self.feature_options, dims)

    def predict(self, queries: Sequence[Query]) -> Prediction:
        return self.predict_inputs(self.inputs(queries))

    def predict_inputs(self, inputs: ModalityInputs) -> Prediction:
        """Rows with image features through fusion + image head, the rest through the text
        head."""
        n, e = len(inputs), len(self.experts)
        quality, evidence = np.zeros((n, e)), np.full((n, e), np.nan)
        image_rows = inputs.mask if self.image_head is not None else np.zeros(n, dtype=bool)
        for rows, head in ((~image_rows, self.text_head), (image_rows, self.image_head)):
            if head is None or not rows.any():
                continue
            part = inputs.subset(rows)
            x = part.text if head is self.text_head else self._fused(part)
            q, ev = head.predict(x)
            quality[rows] = q
            if ev is not None:
                evidence[rows] = ev
        quality = np.clip(quality, 0.0, 1.0)
        conf = np.where(np.isfinite(evidence), confidence(quality, np.nan_to_num(evidence)),
                        confidence(quality))
        return Prediction(self.experts, quality, conf)

    def _fused(self, inputs: ModalityInputs) -> np.ndarray:
        assert self.fusion_state is not None
        return self.fusion_state.transform(inputs)

    # -- persistence -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "features": self.features, "fusion": self.fusion,
            "encoder": self.encoder.to_config(), "feature_options": self.feature_options,
            "options": self.options, "text_head": self.text_head.config(),
            "image_head": None if self.image_head is None else self.image_head.config(),
            "fusion_state": None if self.fusion_state is None else self.fusion_state.config(),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"text.{k}": v for k, v in self.text_head.arrays().items()}
        if self.image_head is not None and self.fusion_state is not None:
            out.update({f"image.{k}": v for k, v in self.image_head.arrays().items()})
            out.update({f"fusion.{k}": v for k, v in self.fusion_state.arrays().items()})
        return out

    @classmethod
    def from_saved(cls, experts: Sequence[str], config: Mapping[str, Any],
                   arrays: Mapping[str, np.ndarray]) -> Router:
        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

        image_cfg, fusion_cfg = config.get("image_head"), config.get("fusion_state")
        return cls(
            experts, features=config.get("features", ()), fusion=config.get("fusion", "mean"),
            encoder=config.get("encoder"), feature_options=config.get("feature_options"),
            options=config.get("options"),
            text_head=cls.head.load(config["text_head"], part("text.")),
            image_head=None if image_cfg is None else cls.head.load(image_cfg, part("image.")),
            fusion_state=None if fusion_cfg is None else Fusion.from_saved(fusion_cfg,
                                                                           part("fusion.")))
