"""The image parts of a request, decoded and checked before anything is routed or reserved.

Every ``image_url`` part is loaded in request order into a :class:`LoadedImage` (its bytes,
SHA-256, sniffed media type and size), so that a bad image fails fast with a 400 naming the
part (``messages[0].content[1].image_url.url``) and the feature step reads the bytes without
decoding the URL again. The request body itself is not touched: the upstream receives the
images exactly as the client sent them.

Accepted: ``data:image/<png|jpeg|webp|gif>;base64,...`` URLs, and remote ``http(s)`` URLs
only where ``images.remote.enabled`` (fetched by :mod:`coe_gateway.vision.fetch`). Caps (see
:class:`~coe_gateway.config.ImagesConfig`): ``max_images`` per request, ``max_image_bytes``
per image (encoded length checked before decoding), ``max_pixels`` per image (read from the
header, before any pixel is decoded). The image must parse: Pillow's ``verify()``, and for
formats whose ``verify()`` checks nothing (JPEG, WebP, GIF) a decode, at 1/8 scale for JPEG.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from PIL import Image, UnidentifiedImageError

from coe_gateway.errors import (
    ImageTooLargeError,
    InvalidImageError,
    RemoteImagesDisabledError,
    TooManyImagesError,
)

if TYPE_CHECKING:
    from coe_gateway.config import ImagesConfig
    from coe_gateway.protocol import ChatRequest

Source = Literal["data", "remote"]

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
"""Pillow format -> media type, the formats accepted (OpenAI's list)."""

DATA_URL = re.compile(r"data:(image/(?:png|jpeg|jpg|webp|gif));base64,", re.IGNORECASE)
OFF_LOOP_BYTES = 256 * 1024
"""A data: URL longer than this is decoded in a worker thread (keeps the event loop free)."""


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """One checked image of a request; ``media_type`` is what the bytes are (sniffed), not
    what the URL said."""

    data: bytes
    sha256: str
    media_type: str
    width: int
    height: int
    source: Source


class ImageFetcher(Protocol):
    """Fetches a remote image URL: its bytes (at most ``max_bytes``), or an
    InvalidImageError subclass naming ``param``."""

    async def fetch(self, url: str, param: str) -> bytes: ...


def decode_data_url(url: str, limits: ImagesConfig,
                    param: str = "image_url.url") -> LoadedImage:
    """The image of a ``data:image/...;base64,`` URL, checked against ``limits``."""
    match = DATA_URL.match(url)
    if match is None:
        head = url[:40] + ("..." if len(url) > 40 else "")
        raise InvalidImageError(
            f"Invalid image URL {head!r}: a data URL must be 'data:image/<png|jpeg|webp|gif>;"
            "base64,<data>'.", param=param)
    payload = url[match.end():]
    cap = limits.max_image_bytes
    if len(payload) > 4 * (cap // 3 + 1):  # base64 of `cap` bytes, before decoding it
        raise _too_large_bytes(len(payload) * 3 // 4, cap, param)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError("Invalid image: the data URL is not valid base64.",
                                param=param) from None
    return inspect_image(data, limits, param, "data")


def inspect_image(data: bytes, limits: ImagesConfig, param: str, source: Source) -> LoadedImage:
    """``data`` as a :class:`LoadedImage`: size caps, format and a parse check (a 400 naming
    ``param`` on any failure)."""
    if len(data) > limits.max_image_bytes:
        raise _too_large_bytes(len(data), limits.max_image_bytes, param)
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            fmt, (width, height) = im.format or "", im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(f"Image too large: more pixels than the limit of "
                                 f"{limits.max_pixels:,}.", param=param) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InvalidImageError("Invalid image: the data is not an image we can read "
                                "(png, jpeg, webp, gif).", param=param) from None
    if fmt not in FORMATS:
        raise InvalidImageError(f"Invalid image: format {fmt or 'unknown'} is not supported "
                                "(png, jpeg, webp, gif).", param=param)
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"Image too large: {width}x{height} = {width * height:,} pixels, more than the "
            f"limit of {limits.max_pixels:,} (images.max_pixels).", param=param)
    _check_parses(data, fmt, param)
    return LoadedImage(data, hashlib.sha256(data).hexdigest(), FORMATS[fmt], width, height,
                       source)


def _check_parses(data: bytes, fmt: str, param: str) -> None:
    """InvalidImageError unless the whole image parses (``verify()``; a decode where
    ``verify()`` checks nothing)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        if fmt != "PNG":  # verify() reads every PNG chunk and its CRC; the others: decode
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))  # JPEG only
                im.load()
    except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, struct.error)
        raise InvalidImageError(f"Invalid image: the {fmt} data is corrupt or truncated "
                                f"({exc}).", param=param) from None


def _too_large_bytes(size: int, cap: int, param: str) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"Image too large: about {size:,} bytes, more than the limit of {cap:,} bytes "
        "(images.max_image_bytes).", param=param)


def image_parts(request: ChatRequest) -> Iterator[tuple[str, str]]:
    """``(param, url)`` of every image part, in request order."""
    for i, m in enumerate(request.messages):
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url")
                yield f"messages[{i}].content[{j}].image_url.url", url if isinstance(
                    url, str) else ""


async def load_request_images(request: ChatRequest, settings: ImagesConfig,
                              fetcher: ImageFetcher | None = None) -> list[LoadedImage]:
    """Every image of ``request``, in order, checked (a 400 at the first bad one). Remote
    URLs go through ``fetcher`` (default: a :class:`~coe_gateway.vision.fetch.RemoteFetcher`
    of ``settings``) when ``settings.remote.enabled``."""
    parts = list(image_parts(request))
    if len(parts) > settings.max_images:
        raise TooManyImagesError(
            f"Too many images: {len(parts)} image parts, more than the limit of "
            f"{settings.max_images} per request (images.max_images).",
            param=parts[settings.max_images][0])
    if fetcher is None and settings.remote.enabled:
        from coe_gateway.vision.fetch import RemoteFetcher

        fetcher = RemoteFetcher(settings)
    return [await _load_one(url, param, settings, fetcher) for param, url in parts]


async def _load_one(url: str, param: str, settings: ImagesConfig,
                    fetcher: ImageFetcher | None) -> LoadedImage:
    if not url:
        raise InvalidImageError("An image part needs 'image_url.url' (a data: or https: URL).",
                                param=param)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        if len(url) > OFF_LOOP_BYTES:
            return await asyncio.to_thread(decode_data_url, url, settings, param)
        return decode_data_url(url, settings, param)
    if scheme not in ("http", "https"):
        raise InvalidImageError(f"Invalid image URL scheme {scheme or url[:20]!r}: use a "
                                "data: URL or an http(s) URL.", param=param)
    if not settings.remote.enabled or fetcher is None:
        raise RemoteImagesDisabledError(
            "Remote image URLs are disabled on this gateway: send the image as a data: URL "
            "(base64), or ask the operator to set images.remote.enabled: true with "
            "images.remote.allow_hosts.", param=param)
    data = await fetcher.fetch(url, param)
    return await asyncio.to_thread(inspect_image, data, settings, param, "remote")


def blank_png(size: tuple[int, int] = (64, 48)) -> bytes:
    """A white PNG of ``size`` (warm-ups, the evaluation's blanked-image control)."""
    buf = io.BytesIO()
    Image.new("RGB", size, (255, 255, 255)).save(buf, format="PNG")
    return buf.getvalue()
