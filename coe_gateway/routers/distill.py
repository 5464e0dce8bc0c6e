"""Distil a static token-embedding table from a sentence-transformers model (model2vec-style).

Every vocabulary token is run through the model on its own (``[CLS] token [SEP]``) and the
output is mean-pooled as the model pools sentences; the (V, H) result is centred and reduced
by PCA to ``dim`` columns, and each row is scaled by a Zipf weight ``log(2 + rank) / log(2 +
V)``-style down-weighting of frequent tokens (the vocabulary order of WordPiece models is
roughly by frequency). At query time the text's token vectors are averaged
(:class:`coe_gateway.routers.embedding.StaticEncoder`): no transformer runs, so one query
takes microseconds instead of tens of milliseconds.

Output directory: ``table.safetensors`` (``table``: (V, dim) float16), ``tokenizer.json``
(the source's tokenizer), ``encoder.json`` (source, dim, method, checksum). Built from the
local model only, never downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

Progress = Callable[[int, int], None]


def _token_outputs(source: Path, batch: int, progress: Progress | None,
                   only_texts: Sequence[str] | None) -> tuple[np.ndarray, Any]:
    """(V, H) mean-pooled output of each vocabulary token alone (only the tokens of
    ``only_texts`` when given; the other rows stay zero), and the tokenizer."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    tok = Tokenizer.from_file(str(source / "tokenizer.json"))
    model = AutoModel.from_pretrained(str(source)).eval()
    vocab = tok.get_vocab_size()
    # a BERT WordPiece vocabulary (MiniLM's) always has both special tokens
    cls_id, sep_id = cast(int, tok.token_to_id("[CLS]")), cast(int, tok.token_to_id("[SEP]"))
    out = np.zeros((vocab, model.config.hidden_size), dtype=np.float32)  # (V, H)
    todo = np.arange(vocab)
    if only_texts is not None:
        todo = np.unique([i for e in tok.encode_batch(list(only_texts)) for i in e.ids])
    with torch.inference_mode():
        for start in range(0, len(todo), batch):
            ids = torch.from_numpy(todo[start:start + batch])  # (b,)
            inp = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)],
                              dim=1)  # (b, 3)
            hidden = model(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state
            out[ids.numpy()] = hidden.mean(dim=1).numpy()  # (b, H)
            if progress is not None:
                progress(min(start + batch, len(todo)), len(todo))
    return out, tok


def _dead_tokens(tok: Any) -> np.ndarray:
    """(V,) True for padding, [unused*] and special tokens: they get a zero row."""
    vocab = tok.get_vocab()
    dead = np.zeros(tok.get_vocab_size(), dtype=bool)
    for token, i in vocab.items():
        if token.startswith("[") and token.endswith("]"):
            dead[i] = True
    return dead


def pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean (H,), components (dim, H)) of x (N, H), signs fixed (largest loading positive)."""
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)  # vt (H, H)
    comp = vt[:dim]
    sign = np.sign(comp[np.arange(len(comp)), np.abs(comp).argmax(axis=1)])
    return mean, comp * sign[:, None]


def zipf_weights(vocab: int, first_word: int) -> npt.NDArray[np.float32]:
    """(V,) weights growing with log rank from ``first_word`` on (frequent tokens count less)."""
    rank = np.maximum(np.arange(vocab) - first_word, 0) + 1
    w = np.log1p(rank)
    scaled: npt.NDArray[np.float64] = w / w.max()
    return scaled.astype(np.float32)


def build_static_encoder(
    out_dir: str | Path, source: str | Path | None = None, dim: int = 256, batch: int = 512,
    progress: Progress | None = None, only_texts: Sequence[str] | None = None,
) -> Path:
    """Distil ``source`` (default: the shipped MiniLM) into a static table in ``out_dir``.
    ``only_texts`` restricts the table to the tokens of those texts (tests: seconds)."""
    from safetensors.numpy import save_file

    from coe_gateway.routers.embedding import minilm_path

    src = Path(source) if source else minilm_path()
    outputs, tok = _token_outputs(src, batch, progress, only_texts)
    dead = _dead_tokens(tok) | ~outputs.any(axis=1)
    mean, comp = pca(outputs[~dead], min(dim, outputs.shape[1]))
    table = (outputs - mean) @ comp.T  # (V, dim)
    first_word = int(tok.token_to_id("the") or 0)
    table *= zipf_weights(len(table), first_word)[:, None]
    table[dead] = 0.0
    table16 = table.astype(np.float16)
    out = Path(out_dir)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({"table": table16, "pca_mean": mean.astype(np.float32),
               "pca_components": comp.astype(np.float32)}, str(tmp / "table.safetensors"))
    shutil.copy(src / "tokenizer.json", tmp / "tokenizer.json")
    meta = {"source": str(src), "dim": int(table.shape[1]), "vocab_size": int(len(table)),
            "method": "token outputs, mean-pooled; PCA; Zipf weights",
            "checksum": hashlib.sha256(table16.tobytes()).hexdigest()}
    (tmp / "encoder.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
