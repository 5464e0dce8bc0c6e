"""Feature stores on disk: one safetensors file per extractor fingerprint.

A store file ``<fingerprint>.safetensors`` holds ``vectors`` (N, D) float16 and, in its
metadata, ``keys`` (a JSON list of the images' SHA-256 hex digests, row order), ``kind``,
``fingerprint`` and ``dim``. It is read on first use, merged with what is new and written
atomically (a temporary file, then ``os.replace``), so an interrupted run loses nothing that
was saved and a reader never sees half a file.

Lookups go through :class:`StoreSet`: the shipped stores (``data/image-features/**`` of the
repository) first, then the user store (``~/.cache/coe-gateway/image-features``), which is
the one new vectors are written to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

SHIPPED_ROOT = Path(__file__).resolve().parents[3] / "data" / "image-features"


def user_root() -> Path:
    """``<cache_root>/image-features`` (the same root as the embedding cache)."""
    from coe_gateway.routers.embedding import cache_root

    return cache_root() / "image-features"


class FeatureStore:
    """Vectors of one fingerprint by image SHA-256 (hex), in one file, loaded lazily."""

    def __init__(self, path: str | Path, kind: str = "", dim: int = 0) -> None:
        self.path = Path(path)
        self.kind = kind
        self.dim = dim
        self._rows: dict[str, np.ndarray] | None = None
        self._dirty = False

    @property
    def fingerprint(self) -> str:
        return self.path.name.removesuffix(".safetensors")

    def _load(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            self._rows = {}
            if self.path.exists():
                self._rows.update(read_store(self.path))
        return self._rows

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def keys(self) -> list[str]:
        return list(self._load())

    def get(self, key: str) -> np.ndarray | None:
        """The ``(D,)`` float16 vector of ``key``, or None."""
        return self._load().get(key)

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Add or replace rows (in memory until :meth:`save`)."""
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors")
        rows = self._load()
        for key, vec in zip(keys, np.asarray(vectors, dtype=np.float16)):
            rows[key] = vec
        self._dirty = self._dirty or bool(keys)

    def merge(self, other: FeatureStore) -> None:
        """Take every row of ``other`` (same fingerprint) that this store lacks."""
        if other.fingerprint != self.fingerprint:
            raise ValueError(f"cannot merge {other.path} into {self.path}: other fingerprint")
        missing = [k for k in other.keys() if k not in self]
        self.add(missing, np.stack([other._load()[k] for k in missing]) if missing
                 else np.zeros((0, self.dim), np.float16))

    def save(self) -> None:
        """Write the file atomically when something was added since the last save."""
        if not self._dirty:
            return
        rows = self._load()
        if self.path.exists():  # another process may have added rows since we read it
            for key, vec in read_store(self.path).items():
                rows.setdefault(key, vec)
        write_store(self.path, rows, self.kind, self.fingerprint)
        self._dirty = False


def read_store(path: Path) -> dict[str, np.ndarray]:
    """The rows of one store file, by key."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        keys = json.loads((handle.metadata() or {}).get("keys", "[]"))
        vectors = handle.get_tensor("vectors")  # (N, D) float16
    if len(keys) != len(vectors):
        raise ValueError(f"{path}: {len(keys)} keys for {len(vectors)} vectors")
    return dict(zip(keys, vectors))


def write_store(path: Path, rows: dict[str, np.ndarray], kind: str, fingerprint: str) -> None:
    """Write ``rows`` (sorted by key, so the file does not depend on insertion order)."""
    from safetensors.numpy import save_file

    keys = sorted(rows)
    dim = len(next(iter(rows.values()))) if rows else 0
    vectors = (np.stack([rows[k] for k in keys]).astype(np.float16) if keys
               else np.zeros((0, dim), np.float16))  # (N, D)
    meta = {"keys": json.dumps(keys), "kind": kind, "fingerprint": fingerprint,
            "dim": str(dim)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"vectors": vectors}, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class StoreSet:
    """The read-only stores of one fingerprint, then the writable one."""

    def __init__(self, fingerprint: str, kind: str, dim: int, write_root: Path,
                 read_roots: Iterable[Path] = ()) -> None:
        name = f"{fingerprint}.safetensors"
        self.writable = FeatureStore(write_root / name, kind, dim)
        self.readers = [FeatureStore(p, kind, dim) for root in read_roots if root.is_dir()
                        for p in sorted(root.rglob(name)) if p != self.writable.path]

    def get(self, key: str) -> np.ndarray | None:
        for store in (*self.readers, self.writable):
            vec = store.get(key)
            if vec is not None:
                return vec
        return None
