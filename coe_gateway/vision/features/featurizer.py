"""Image features for many image files (offline) and for a request's images (serving).

Offline (:func:`image_features_for_paths`, training and evaluation): each image is keyed by
the SHA-256 of its file bytes and looked up in the shipped stores and the user store; only
what is missing is computed, and it is added to the user store chunk by chunk (so a long run
can be stopped and resumed). Serving (:class:`ImageFeaturizer`): the same extractors behind an
in-memory LRU by (kind, SHA-256), run off the event loop on one worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from coe_gateway.vision.features.base import ImageFeatureExtractor, build_extractor
from coe_gateway.vision.features.store import SHIPPED_ROOT, StoreSet, user_root

log = logging.getLogger(__name__)
CHUNK = 32
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ImageFeatureBatch:
    """Features of N images: ``features[kind]`` (N, D) float32, zero rows where absent."""

    features: dict[str, np.ndarray]
    present: np.ndarray  # (N,) bool: the row had a readable image


def decode(data: bytes) -> Image.Image:
    """Bytes -> a fully loaded PIL image (any error of Pillow propagates)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        log.warning("image %s: cannot read (%s); no image features for it", path, exc)
        return None


class _Images:
    """The files of one run: bytes and keys read once, decoded on demand."""

    def __init__(self, paths: Sequence[str | None]) -> None:
        self.paths = list(paths)
        self.data = [_read(p) for p in self.paths]
        self.keys = [sha256(d) if d is not None else None for d in self.data]
        self.broken: set[str] = set()  # keys of files Pillow cannot decode

    def decoded(self, indices: Sequence[int]) -> list[tuple[int, Image.Image]]:
        out = []
        for i in indices:
            data, key = self.data[i], self.keys[i]
            if data is None or key is None or key in self.broken:
                continue
            try:
                out.append((i, decode(data)))
            except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds
                log.warning("image %s: cannot decode (%s); no image features for it",
                            self.paths[i], exc)
                self.broken.add(key)
        return out


def compute_features(
    paths: Sequence[str | None], kinds: Sequence[str],
    options: Mapping[str, Mapping[str, Any]] | None, write_root: Path,
    read_roots: Sequence[Path] = (), progress: Progress | None = None, chunk: int = CHUNK,
) -> ImageFeatureBatch:
    """Features of the images at ``paths`` through the stores: what is in ``read_roots`` or
    ``write_root`` is reused, the rest is computed and saved under ``write_root``."""
    images = _Images(paths)
    extractors = {k: build_extractor(k, (options or {}).get(k)) for k in kinds}
    sets = {k: StoreSet(e.fingerprint(), k, e.dim, write_root, read_roots)
            for k, e in extractors.items()}
    first = {key: i for i, key in reversed(list(enumerate(images.keys))) if key is not None}
    todo = {k: sorted(i for key, i in first.items() if sets[k].get(key) is None)
            for k in kinds}
    total, done = sum(len(v) for v in todo.values()), 0
    for kind, missing in todo.items():
        for start in range(0, len(missing), chunk):
            decoded = images.decoded(missing[start:start + chunk])
            if decoded:
                vectors = extractors[kind].extract([im for _, im in decoded])  # (b, D)
                sets[kind].writable.add([str(images.keys[i]) for i, _ in decoded], vectors)
                sets[kind].writable.save()
            done += len(missing[start:start + chunk])
            if progress is not None:
                progress(done, total)
    present = np.array([key is not None and key not in images.broken
                        for key in images.keys], dtype=bool)  # (N,)
    features = {k: _gather(sets[k], images.keys, present, extractors[k].dim) for k in kinds}
    return ImageFeatureBatch(features, present)


def _gather(stores: StoreSet, keys: Sequence[str | None], present: np.ndarray,
            dim: int) -> np.ndarray:
    out = np.zeros((len(keys), dim), dtype=np.float32)  # (N, D)
    for i, key in enumerate(keys):
        vec = stores.get(key) if key is not None and present[i] else None
        if vec is not None:
            out[i] = vec
    return out


def image_features_for_paths(
    paths: Sequence[str | None], kinds: Sequence[str],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Progress | None = None,
) -> ImageFeatureBatch:
    """Features of image files for training and evaluation, through the shipped stores and
    the user store (new vectors go to the user store). A None path, a missing file or an
    unreadable image gives ``present`` False and a zero row, with a warning."""
    return compute_features(paths, kinds, options, user_root(), [SHIPPED_ROOT], progress)


class ImageFeaturizer:
    """The serving path: features of a request's images, keyed by image SHA-256."""

    def __init__(self, kinds: Sequence[str],
                 options: Mapping[str, Mapping[str, Any]] | None = None,
                 cache_size: int = 1024) -> None:
        if not kinds:
            raise ValueError("ImageFeaturizer needs at least one feature kind")
        self.kinds = tuple(kinds)
        self.extractors: dict[str, ImageFeatureExtractor] = {
            k: build_extractor(k, (options or {}).get(k)) for k in self.kinds}
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-features")

    def _cached(self, kind: str, key: str) -> np.ndarray | None:
        with self._lock:
            vec = self._cache.get((kind, key))
            if vec is not None:
                self._cache.move_to_end((kind, key))
            return vec

    def _remember(self, kind: str, key: str, vec: np.ndarray) -> None:
        with self._lock:
            self._cache[(kind, key)] = vec
            self._cache.move_to_end((kind, key))
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def extract(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        """One ``(D,)`` float32 vector per kind: the mean over ``images`` (ValueError when
        there are none or one cannot be decoded)."""
        if not images:
            raise ValueError("no images to extract features from")
        keys = [sha256(data) for data in images]
        decoded: dict[int, Image.Image] = {}
        out = {}
        for kind, extractor in self.extractors.items():
            rows: list[np.ndarray | None] = [self._cached(kind, key) for key in keys]
            missing = [i for i, row in enumerate(rows) if row is None]
            for i in missing:
                if i not in decoded:
                    try:
                        decoded[i] = decode(images[i])
                    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds
                        raise ValueError(f"image {i}: cannot decode: {exc}") from exc
            if missing:
                vectors = extractor.extract([decoded[i] for i in missing])  # (m, D)
                for i, vec in zip(missing, vectors):
                    rows[i] = vec
                    self._remember(kind, keys[i], vec)
            out[kind] = np.mean(np.stack([r for r in rows if r is not None]),
                                axis=0).astype(np.float32)  # (D,)
        return out

    async def aextract(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        """:meth:`extract` on the featurizer's worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.extract, list(images))

    def close(self) -> None:
        """Stop the worker thread (pending work is finished first)."""
        self._pool.shutdown(wait=True)
