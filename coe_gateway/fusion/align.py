"""Aligning experts that tokenize differently, so that no token sees text after it.

The paper writes every expert's states with the same length ``N`` and an ``N x KN``
block-causal mask, which holds only for one shared tokenizer. SmolLM2 and Gemma-3 split the
same text differently, so the primary's tokens drive the alignment instead:

- the primary tokenizes the text as it always does; token ``i`` covers the characters up to
  its end offset ``e_i``; its *chunk* is the text it adds, ``text[e_{i-1}:e_i]`` (empty for
  BOS, or for a token that completes no character yet);
- each peer reads the same text chunk by chunk: its tokens are the concatenation of its own
  tokenization of every chunk (its BOS first, where it uses one), and each peer token is
  *owned* by the primary position whose chunk it came from;
- primary position ``i`` attends to the peer tokens owned by positions ``<= i`` and to its
  own positions ``<= i``.

A peer token's state depends only on the peer tokens before it, which came from chunks
``<= i``, i.e. from ``text[:e_i]``: strictly causal, also for tokenizers whose splits depend on
what follows (a natural tokenization of the whole text would let a peer token's boundary
reveal the next characters). The same rule holds while decoding: each generated primary
token's chunk is fed to the peers as it appears. The price is that a peer sees its text split
at the primary's token boundaries, not its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

PREFIX_OWNER = -1
"""Owner of a peer's BOS: it carries no text, so every primary position may see it."""


@dataclass(frozen=True)
class PrimaryText:
    """The primary's tokens of ``context + continuation`` and where each ends in the text."""

    text: str
    ids: list[int]
    ends: list[int]
    target_from: int
    """Index of the first continuation token (the tokens whose log-probability is scored)."""

    def chunks(self) -> list[str]:
        return chunks_of(self.text, self.ends)


@dataclass(frozen=True)
class PeerText:
    """One peer's tokens, read chunk by chunk, and the primary position owning each."""

    ids: list[int]
    owners: list[int]


def _encode(tokenizer: Any, text: str, special: bool) -> tuple[list[int], list[int]]:
    enc = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
    return list(enc["input_ids"]), [int(end) for _, end in enc["offset_mapping"]]


def encode_pair(tokenizer: Any, context: str, continuation: str = "") -> PrimaryText:
    """Tokenize context (with the tokenizer's specials) and continuation apart, as
    lm-evaluation-harness does, so that the continuation starts on a token boundary."""
    ids, ends = _encode(tokenizer, context, True)
    target_from = len(ids)
    if continuation:
        more, more_ends = _encode(tokenizer, continuation, False)
        ids += more
        ends += [len(context) + e for e in more_ends]
    return PrimaryText(context + continuation, ids, ends, target_from)


def chunks_of(text: str, ends: Sequence[int]) -> list[str]:
    """The text each token adds: ``text[prev:end]`` with ``prev`` the furthest end so far."""
    out, prev = [], 0
    for end in ends:
        out.append(text[prev:end] if end > prev else "")
        prev = max(prev, end)
    return out


def encode_peer(tokenizer: Any, bos_id: int | None, chunks: Sequence[str],
                first_owner: int = 0) -> PeerText:
    """The peer's tokens of ``chunks`` (chunk ``c`` owned by position ``first_owner + c``),
    after its BOS when it uses one and ``first_owner`` is 0."""
    ids: list[int] = []
    owners: list[int] = []
    if bos_id is not None and first_owner == 0:
        ids.append(bos_id)
        owners.append(PREFIX_OWNER)
    texts = [c for c in chunks if c]
    pieces = iter(tokenizer(texts, add_special_tokens=False)["input_ids"]) if texts else iter(())
    for c, chunk in enumerate(chunks):
        if chunk:
            piece = next(pieces)
            ids += piece
            owners += [first_owner + c] * len(piece)
    return PeerText(ids, owners)


def visibility(n_primary: int, owners: Sequence[Sequence[int]],
               lengths: Sequence[int] | None = None) -> torch.Tensor:
    """Boolean mask (N, N + sum S_m): primary row ``i`` may see its own columns ``<= i``
    (the first ``N``), then each peer's tokens owned by positions ``<= i``. Padding columns
    (own beyond ``lengths[0]``, or a peer owner of ``n_primary`` and more) are never seen."""
    rows = torch.arange(n_primary).unsqueeze(1)                      # (N, 1)
    own = torch.arange(n_primary).unsqueeze(0) <= rows               # (N, N)
    blocks = [own]
    for peer in owners:
        owner = torch.tensor(list(peer), dtype=torch.long).unsqueeze(0)  # (1, S)
        blocks.append(owner <= rows)                                 # (N, S)
    return torch.cat(blocks, dim=1)
