"""The feature step of the pipeline: image features for the router that will read them.

It runs after the router is chosen and before it predicts, and only when both hold: the
request carries images and the router declares the image feature kinds it reads
(:attr:`Router.image_kinds`; empty for text routers, so a text router costs nothing here). The
features are computed off the event loop by one :class:`ImageFeaturizer` per distinct
(kinds, options) set, each with its own LRU by image SHA-256, so a repeated image is free.
The result goes to the router as ``Query.image_features``. When extraction fails (an image
Pillow accepted but an extractor cannot read), the request is routed on its text, as the
image-aware routers do for text-only requests, and the failure is logged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from coe_gateway.routers.base import Query, Router
from coe_gateway.vision.images import blank_png

if TYPE_CHECKING:
    from coe_gateway.config import ImagesConfig
    from coe_gateway.vision.features.featurizer import ImageFeaturizer
    from coe_gateway.vision.images import LoadedImage

log = logging.getLogger(__name__)


class FeatureStep:
    """Featurizers shared by every request of one gateway, built on first use."""

    def __init__(self, cache_size: int = 1024,
                 options: Mapping[str, Mapping[str, Any]] | None = None,
                 threads: int | None = 1) -> None:
        self.cache_size = cache_size
        self.options = {k: dict(v) for k, v in (options or {}).items()}  # runtime overrides
        self.threads = threads
        self._featurizers: dict[str, ImageFeaturizer] = {}

    @classmethod
    def from_config(cls, cfg: ImagesConfig) -> FeatureStep:
        return cls(options=cfg.feature_options, threads=cfg.feature_threads)

    def featurizer(self, kinds: Sequence[str],
                   options: Mapping[str, Mapping[str, Any]]) -> ImageFeaturizer:
        merged = {k: {**options.get(k, {}), **self.options.get(k, {})} for k in kinds}
        key = json.dumps([list(kinds), merged], sort_keys=True, default=str)
        if key not in self._featurizers:
            from coe_gateway.vision.features.featurizer import ImageFeaturizer

            if self.threads is not None and not self._featurizers:
                import torch

                torch.set_num_threads(self.threads)
            self._featurizers[key] = ImageFeaturizer(kinds, merged, self.cache_size)
        return self._featurizers[key]

    async def attach(self, router: Router, query: Query,
                     images: Sequence[LoadedImage]) -> tuple[Query, float | None]:
        """``query`` with the image features ``router`` reads, and the seconds they took
        (``query`` unchanged and None when the router reads none, when the request has no
        image, or when the features are already there)."""
        kinds, options = router.image_kinds, router.image_feature_options
        if not kinds or not images or query.image_features is not None:
            return query, None
        start = time.perf_counter()
        try:
            features = await self.featurizer(kinds, options).aextract([im.data for im in images])
        except Exception:  # a feature failure must not fail the request: route on the text
            log.exception("image features %s failed; routing on the text alone", list(kinds))
            return query, None
        return dataclasses.replace(query, image_features=features), time.perf_counter() - start

    async def warm_up(self, routers: Sequence[Router]) -> None:
        """Load the extractors of every router that reads images and run them once on a
        small blank image (model weights load now, not on the first image request)."""
        for router in routers:
            if router.image_kinds:
                featurizer = self.featurizer(router.image_kinds, router.image_feature_options)
                await featurizer.aextract([blank_png()])
