"""The gateway's feature step: features only for a router that reads them, runtime options over
the router's, one featurizer per option set, and a failure that routes on the text."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coe_gateway.routers.base import Prediction, Query, Router
from coe_gateway.vision.images import LoadedImage, blank_png
from coe_gateway.vision.step import FeatureStep


class ReadsImages(Router):
    kind = "test-reads-images"

    def __init__(self, kinds: Sequence[str], options: Mapping[str, Mapping[str, Any]]) -> None:
        super().__init__(["a", "b"])
        self._kinds, self._options = tuple(kinds), options

    @property
    def image_kinds(self) -> tuple[str, ...]:
        return self._kinds

    @property
    def image_feature_options(self) -> Mapping[str, Mapping[str, Any]]:
        return self._options

    def predict(self, queries: Sequence[Query]) -> Prediction:
        q = np.full((len(queries), 2), 0.5)
        return Prediction(self.experts, q, q)


def image(data: bytes | None = None) -> LoadedImage:
    data = data or blank_png()
    return LoadedImage(data=data, sha256=hashlib.sha256(data).hexdigest(),
                       media_type="image/png", width=64, height=48, source="data")


async def test_a_text_router_gets_no_features() -> None:
    step = FeatureStep(threads=None)
    query = Query(text="hi")
    got, seconds = await step.attach(ReadsImages([], {}), query, [image()])
    assert got is query and seconds is None and not step._featurizers


async def test_features_for_an_image_router_with_runtime_options_over_its_own() -> None:
    step = FeatureStep(options={"pixels": {"batch_size": 2}}, threads=None)
    router = ReadsImages(["stats", "pixels"], {"pixels": {"batch_size": 4, "device": "cpu"}})
    got, seconds = await step.attach(router, Query(text="hi"), [image()])
    assert got.image_features is not None and set(got.image_features) == {"stats", "pixels"}
    assert got.image_features["pixels"].shape == (1280,) and seconds is not None
    (featurizer,) = step._featurizers.values()
    assert featurizer.extractors["pixels"].options["batch_size"] == 2  # the gateway's wins


async def test_already_computed_features_are_kept() -> None:
    step = FeatureStep(threads=None)
    query = Query(text="hi", image_features={"stats": np.zeros(16, dtype=np.float32)})
    got, seconds = await step.attach(ReadsImages(["stats"], {}), query, [image()])
    assert got is query and seconds is None


async def test_a_feature_failure_routes_on_the_text() -> None:
    step = FeatureStep(threads=None)
    got, seconds = await step.attach(ReadsImages(["stats"], {}), Query(text="hi"),
                                     [image(b"not an image at all")])
    assert got.image_features is None and seconds is None


async def test_warm_up_builds_the_featurizers_of_image_routers_only() -> None:
    step = FeatureStep(threads=None)
    await step.warm_up([ReadsImages([], {}), ReadsImages(["stats"], {})])
    assert len(step._featurizers) == 1
