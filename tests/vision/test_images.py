"""Image parts of requests: data: URLs decoded and checked (formats, bytes, pixels, parse),
400s naming the part, the ``images:`` config section and the example vision config."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from coe_gateway.config import GatewayConfig, ImagesConfig, load_config
from coe_gateway.errors import ConfigError, InvalidImageError
from coe_gateway.protocol import ChatRequest
from coe_gateway.vision.images import (
    LoadedImage,
    decode_data_url,
    image_parts,
    inspect_image,
    load_request_images,
)

ROOT = Path(__file__).resolve().parents[2]
MATHV_IMAGES = ROOT.parent / "shared" / "data" / "mathv" / "images"
LIMITS = ImagesConfig()


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buf, format=fmt)
    return buf.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming ``width`` x ``height`` whose pixel data is one empty IDAT chunk."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
            ">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def code_of(exc: pytest.ExceptionInfo[InvalidImageError]) -> tuple[str | None, str | None]:
    body = exc.value.to_body()["error"]
    assert exc.value.status_code == 400 and body["type"] == "invalid_request_error"
    return body["code"], body["param"]


def request(*parts: dict[str, Any]) -> ChatRequest:
    return ChatRequest({"model": "auto", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}, *parts]}]})


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


@pytest.mark.parametrize(("fmt", "media_type"), [
    ("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")])
def test_data_url_of_each_format_decodes(fmt: str, media_type: str) -> None:
    data = image_bytes(fmt)
    im = decode_data_url(data_url(data, media_type), LIMITS)
    assert im == LoadedImage(data, hashlib.sha256(data).hexdigest(), media_type, 32, 24, "data")


def test_real_mathv_image_decodes() -> None:
    data = (MATHV_IMAGES / "1.jpg").read_bytes()
    im = decode_data_url(data_url(data, "image/jpeg"), LIMITS)
    with Image.open(io.BytesIO(data)) as ref:
        assert (im.width, im.height) == ref.size
    assert im.sha256 == hashlib.sha256(data).hexdigest() and im.media_type == "image/jpeg"


def test_media_type_is_sniffed_from_the_bytes() -> None:
    im = decode_data_url(data_url(image_bytes("JPEG"), "image/png"), LIMITS)
    assert im.media_type == "image/jpeg"
    assert decode_data_url(data_url(image_bytes("JPEG"), "image/jpg"), LIMITS).width == 32


@pytest.mark.parametrize("url", [
    "data:text/plain;base64,aGVsbG8=",
    "data:image/png,rawbytes",
    "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=",
    "data:image/png;base64,!!!not-base64!!!",
    data_url(b"this is not an image at all"),
    data_url(image_bytes("BMP")),
])
def test_bad_data_url_is_invalid_image_naming_the_part(url: str) -> None:
    with pytest.raises(InvalidImageError) as exc:
        decode_data_url(url, LIMITS, "messages[1].content[1].image_url.url")
    assert code_of(exc) == ("invalid_image", "messages[1].content[1].image_url.url")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_image_is_invalid(fmt: str) -> None:
    data = image_bytes(fmt, (256, 256))
    with pytest.raises(InvalidImageError, match="Invalid image") as exc:
        inspect_image(data[: len(data) * 2 // 3], LIMITS, "p", "data")
    assert code_of(exc)[0] == "invalid_image"


def test_bytes_over_the_cap_are_refused_before_decoding() -> None:
    limits = ImagesConfig(max_image_bytes=2048)
    # not even base64: refused by its length, so it was never decoded
    with pytest.raises(InvalidImageError, match="images.max_image_bytes") as exc:
        decode_data_url("data:image/png;base64," + "!" * 4000, limits, "p")
    assert code_of(exc) == ("image_too_large", "p")
    noisy = Image.frombytes("L", (64, 64), random.Random(0).randbytes(64 * 64))
    buf = io.BytesIO()
    noisy.save(buf, format="PNG")
    assert len(buf.getvalue()) > 2048
    with pytest.raises(InvalidImageError) as exc:
        decode_data_url(data_url(buf.getvalue()), limits, "p")
    assert code_of(exc) == ("image_too_large", "p")
    with pytest.raises(InvalidImageError) as exc:  # the decoded cap, remote images' path
        inspect_image(buf.getvalue(), limits, "p", "remote")
    assert code_of(exc) == ("image_too_large", "p")


def test_pixels_over_the_cap_are_refused_from_the_header() -> None:
    with pytest.raises(InvalidImageError, match="images.max_pixels") as exc:
        inspect_image(png_header_only(5000, 5000), ImagesConfig(max_pixels=10_000_000), "p",
                      "data")
    assert code_of(exc) == ("image_too_large", "p")


def test_decompression_bomb_is_image_too_large() -> None:
    # 50k x 50k = 2.5 Gpx: Pillow itself refuses it at open (DecompressionBombError)
    with pytest.raises(InvalidImageError) as exc:
        decode_data_url(data_url(png_header_only(50_000, 50_000)), LIMITS, "p")
    assert code_of(exc) == ("image_too_large", "p")


async def test_request_images_load_in_order_with_their_params() -> None:
    a, b = image_bytes("PNG"), image_bytes("JPEG", (8, 8))
    req = request(image_part(data_url(a)), {"type": "text", "text": "and"},
                  image_part(data_url(b, "image/jpeg")))
    assert [p for p, _ in image_parts(req)] == [
        "messages[1].content[1].image_url.url", "messages[1].content[3].image_url.url"]
    images = await load_request_images(req, LIMITS)
    assert [im.data for im in images] == [a, b]


async def test_too_many_images_names_the_first_one_past_the_limit() -> None:
    url = data_url(image_bytes())
    req = request(*[image_part(url)] * 3)
    assert len(await load_request_images(req, ImagesConfig(max_images=3))) == 3
    with pytest.raises(InvalidImageError, match="images.max_images") as exc:
        await load_request_images(req, ImagesConfig(max_images=2))
    assert code_of(exc) == ("too_many_images", "messages[1].content[3].image_url.url")


@pytest.mark.parametrize(("url", "code", "says"), [
    ("https://images.example.com/cat.png", "remote_images_disabled", "images.remote.enabled"),
    ("http://images.example.com/cat.png", "remote_images_disabled", "data: URL"),
    ("file:///etc/passwd", "invalid_image", "scheme"),
    ("", "invalid_image", "image_url.url"),
])
async def test_non_data_urls_without_remote_images(url: str, code: str, says: str) -> None:
    with pytest.raises(InvalidImageError, match=says) as exc:
        await load_request_images(request(image_part(url)), LIMITS)
    assert code_of(exc) == (code, "messages[1].content[1].image_url.url")


class FakeFetcher:
    """A fetcher answering from a dict (the fetch policy is tested in test_fetch)."""

    def __init__(self, images: dict[str, bytes]) -> None:
        self.images, self.urls = images, list[str]()

    async def fetch(self, url: str, param: str) -> bytes:
        self.urls.append(url)
        return self.images[url]


async def test_remote_images_go_through_the_fetcher_and_the_same_checks() -> None:
    settings = ImagesConfig.model_validate({"remote": {"enabled": True,
                                                       "allow_hosts": ["img.example.com"]}})
    good, bad = "https://img.example.com/a.gif", "https://img.example.com/b.png"
    fetcher = FakeFetcher({good: image_bytes("GIF"), bad: b"<html>"})
    req = request(image_part(good), image_part(data_url(image_bytes())))
    images = await load_request_images(req, settings, fetcher)
    assert [(im.source, im.media_type) for im in images] == [
        ("remote", "image/gif"), ("data", "image/png")]
    with pytest.raises(InvalidImageError) as exc:
        await load_request_images(request(image_part(bad)), settings, fetcher)
    assert code_of(exc) == ("invalid_image", "messages[1].content[1].image_url.url")
    assert fetcher.urls == [good, bad]


def test_images_config_defaults() -> None:
    cfg = GatewayConfig.model_validate({"experts": [{"name": "a", "backend": "litellm",
                                                     "model": "x"}]})
    assert (cfg.images.max_image_bytes, cfg.images.max_pixels, cfg.images.max_images) == (
        20 * 1024 * 1024, 33_000_000, 10)
    r = cfg.images.remote
    assert not r.enabled and r.allow_hosts == [] and not r.allow_http
    assert not r.allow_private_networks and r.max_redirects == 0
    assert (r.timeouts.connect_s, r.timeouts.read_s, r.timeouts.total_s) == (2, 5, 10)
    assert cfg.images.feature_options == {} and cfg.images.feature_threads == 1


MINIMAL = """
experts:
  - {name: a, backend: openai, model: m, urls: ["http://127.0.0.1:9/v1"]}
"""


@pytest.mark.parametrize(("text", "field", "reason"), [
    ("images: {max_images: 0}", "images.max_images", "greater than or equal to 1"),
    ("images: {max_pixels: -5}", "images.max_pixels", "greater than or equal to 1"),
    ("images: {max_bytes: 5}", "images.max_bytes", "Extra inputs"),
    ("images: {remote: {allow_hosts: [ok.example.com, 'https://x.com']}}",
     "images.remote.allow_hosts[1]", "not a host name"),
    ("images: {remote: {allow_hosts: ['*']}}", "images.remote.allow_hosts[0]", "bare '*'"),
    ("images: {remote: {allow_hosts: ['img.example.com:443']}}",
     "images.remote.allow_hosts[0]", "port"),
    ("images: {remote: {max_redirects: 5}}", "images.remote.max_redirects", "less than"),
    ("images: {remote: {timeouts: {connect_s: 0}}}", "images.remote.timeouts.connect_s",
     "greater than 0"),
    ("images: {remote: {enable: true}}", "images.remote.enable", "Extra inputs"),
])
def test_invalid_images_config_names_the_field(tmp_path: Path, text: str, field: str,
                                               reason: str) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(MINIMAL + text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.path, info.value.field) == (str(path), field)
    assert reason in info.value.reason


def test_allow_hosts_are_normalised() -> None:
    r = ImagesConfig.model_validate({"remote": {"allow_hosts": [
        "IMG.Example.COM.", "*.cdn.example.com", "[::1]", "127.0.0.1"]}}).remote
    assert r.allow_hosts == ["img.example.com", "*.cdn.example.com", "::1", "127.0.0.1"]


def test_example_vision_config_loads_with_two_vision_experts() -> None:
    from coe_gateway.workers.kinds import WORKER_KINDS

    cfg = load_config(ROOT / "configs" / "vision.yaml")
    assert [e.backend for e in cfg.experts] == ["vllm", "openai"]
    assert all(e.capabilities == ["text", "vision"] for e in cfg.experts)
    assert all(e.price.input_per_mtok > 0 for e in cfg.experts)
    qwen = cfg.expert("qwen2-vl-2b-instruct")
    assert qwen.model == "Qwen/Qwen2-VL-2B-Instruct"
    kind = WORKER_KINDS["vllm"]
    argv = kind.argv(cfg, qwen, 0, 8100)
    assert argv[argv.index("--limit-mm-per-prompt") + 1] == '{"image": 4, "video": 0}'
    assert kind.env(qwen, 0)["CUDA_VISIBLE_DEVICES"] == "0"
    assert not cfg.images.remote.enabled and cfg.images.max_images == 4
    # a request of max_images images of the largest size fits the body limit (base64: 4/3)
    assert cfg.server.max_request_bytes > cfg.images.max_images * cfg.images.max_image_bytes * 4 / 3
