"""An image-aware router choosing between two fake vision experts, through the gateway.

The training records have one and the same question; only the image tells which expert is
right (``vlm-ink`` answers the dark, ink-heavy images, ``vlm-plain`` the light ones). An
``image-knn`` router on the real ``stats`` image features is trained on them, saved, and
served as ``router:images``: the gateway computes the request image's features before the
router (cached by image hash) and the request goes to the expert that image calls for, with
the image passed upstream byte for byte. A text-only request goes through the router's text
head.
"""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from coe_gateway.config import GatewayConfig
from coe_gateway.protocol import ChatRequest
from coe_gateway.records import RecordSet
from coe_gateway.routers.base import Query
from coe_gateway.routers.multimodal.knn import ImageKNNRouter
from coe_gateway.testing.fake_backend import FakeBackend, fake_config, fake_gateway

EXPERTS = ["vlm-ink", "vlm-plain"]
QUESTION = "What is the answer shown in the figure?"


def picture(ink: bool, seed: int) -> Image.Image:
    """A 320x240 figure: many thick dark strokes (ink) or a nearly blank page."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (320, 240), (250, 250, 250) if not ink else (235, 235, 235))
    draw = ImageDraw.Draw(im)
    for _ in range(40 if ink else 2):
        x, y = (int(v) for v in rng.integers(0, 300, size=2))
        draw.line((x, y % 240, x + int(rng.integers(10, 80)), (y + 30) % 240),
                  fill=(0, 0, 0), width=int(rng.integers(3, 8)) if ink else 1)
    return im


def jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def records(folder: Path, n: int = 40) -> RecordSet:
    paths, scores = [], []
    for i in range(n):
        ink = i % 2 == 0
        path = folder / f"{i}.jpg"
        path.write_bytes(jpeg(picture(ink, i)))
        paths.append(str(path))
        scores.append([1.0, 0.0] if ink else [0.0, 1.0])
    return RecordSet(ids=[f"t/{i}" for i in range(n)], prompts=[QUESTION] * n,
                     categories=[None] * n, splits=[None] * n, models=list(EXPERTS),
                     scores=np.array(scores), images=list(paths))


@pytest.fixture(scope="module")
def saved_router(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("image-router")
    mp = pytest.MonkeyPatch()
    mp.setenv("COE_GATEWAY_CACHE", str(root / "cache"))  # the feature store of this test
    try:
        (root / "images").mkdir()
        train = records(root / "images")
        router = ImageKNNRouter.fit(train, EXPERTS, features=["stats"], k=5)
        return router.save(root / "router")
    finally:
        mp.undo()


def config(router_dir: Path) -> GatewayConfig:
    data = fake_config(EXPERTS).model_dump()
    for e in data["experts"]:
        e["capabilities"] = ["text", "vision"]
    data["routing"]["routers"].append({"name": "images", "kind": "image-knn",
                                       "path": str(router_dir)})
    return GatewayConfig.model_validate(data)


def image_request(image: bytes) -> ChatRequest:
    url = f"data:image/jpeg;base64,{base64.b64encode(image).decode()}"
    return ChatRequest({"model": "router:images", "messages": [{"role": "user", "content": [
        {"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": url}}]}]})


def sent_image(body: dict[str, Any]) -> bytes:
    part = body["messages"][0]["content"][1]
    return base64.b64decode(part["image_url"]["url"].split(",", 1)[1])


async def test_fake_vision_experts_image_aware_router_follows_the_image(
        saved_router: Path) -> None:
    backends = {e: FakeBackend(e) for e in EXPERTS}
    gw = fake_gateway(backends, config(saved_router))
    for seed, ink in ((101, True), (102, False), (103, True), (104, False)):
        image = jpeg(picture(ink, seed))
        reply = await gw.chat(image_request(image))
        want = "vlm-ink" if ink else "vlm-plain"
        assert reply.expert == want, (seed, reply.expert)
        body = backends[want].calls[-1]
        assert hashlib.sha256(sent_image(body)).digest() == hashlib.sha256(image).digest()
    observed = [s for m in gw.metrics.registry.collect() for s in m.samples
                if s.name == "coe_image_features_seconds_count"]
    assert observed and observed[0].value == 4


async def test_fake_vision_experts_text_only_request_uses_the_text_head(
        saved_router: Path, tmp_path: Path) -> None:
    backends = {e: FakeBackend(e) for e in EXPERTS}
    gw = fake_gateway(backends, config(saved_router))
    assert gw.routers.get("images").image_kinds == ("stats",)
    reply = await gw.chat(ChatRequest({"model": "router:images", "messages": [
        {"role": "user", "content": QUESTION}]}))
    assert reply.expert in EXPERTS and reply.decision.features_s is None
    # the text head is the same router on text only: a text-only twin predicts the same
    twin = ImageKNNRouter.fit(records(tmp_path), EXPERTS, features=[], k=5)
    want = twin.predict([Query(text=QUESTION)]).row(0)
    assert {e: v["quality"] for e, v in reply.decision.predicted.items()} == pytest.approx(
        {e: v["quality"] for e, v in want.items()}, abs=1e-3)


class CountingExtractor:
    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0

    def extract(self, images: Any) -> np.ndarray:
        self.calls += 1
        out: np.ndarray = self.inner.extract(images)
        return out


async def test_fake_vision_experts_repeated_image_is_featurized_once(
        saved_router: Path) -> None:
    backends = {e: FakeBackend(e) for e in EXPERTS}
    gw = fake_gateway(backends, config(saved_router))
    image = jpeg(picture(True, 7))
    first = await gw.chat(image_request(image))
    assert first.expert == "vlm-ink" and first.decision.features_s is not None
    featurizer = next(iter(gw.features._featurizers.values()))
    counting = CountingExtractor(featurizer.extractors["stats"])
    featurizer.extractors["stats"] = counting  # type: ignore[assignment]
    second = await gw.chat(image_request(image))
    assert second.expert == "vlm-ink" and counting.calls == 0  # served from the image LRU
    third = await gw.chat(image_request(jpeg(picture(False, 8))))
    assert third.expert == "vlm-plain" and counting.calls == 1
