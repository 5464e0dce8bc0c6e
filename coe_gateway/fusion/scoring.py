"""Scoring multiple-choice items by the log-likelihood of each choice, as OLMES does for
ARC-Easy (``acc_per_char``): the summed log-probability of the continuation ``" " + choice``
after ``"Question: ...\\nAnswer:"``, divided by its characters; the best choice is the answer.
The context is run once and its caches shared by the choices (``FusedState.repeat``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from coe_gateway.fusion.align import encode_pair, encode_peer
from coe_gateway.fusion.cached import extend, start
from coe_gateway.fusion.model import MixtureOfThoughts, _pad
from coe_gateway.fusion.tasks import McItem


@dataclass(frozen=True)
class ChoiceScores:
    """One item's choices under one system: summed log-probabilities and characters."""

    logprob: tuple[float, ...]
    chars: tuple[int, ...]

    @property
    def per_char(self) -> list[float]:
        return [lp / max(c, 1) for lp, c in zip(self.logprob, self.chars)]


def pick(per_char: Sequence[float]) -> int:
    """The best choice; an exact tie is no answer (-1), never the first or last position
    (SciQ's gold is always the last choice)."""
    best = max(per_char)
    winners = [i for i, v in enumerate(per_char) if v == best]
    return winners[0] if len(winners) == 1 else -1


def score_item(model: MixtureOfThoughts, item: McItem, primary: int, fuse: bool = True
               ) -> ChoiceScores:
    """The item's choices under ``primary``, fused with the other experts (or alone)."""
    experts = model.experts
    peers = [m for m in range(len(experts)) if m != primary]
    prim = experts[primary].tokenizer
    ctx = encode_pair(prim, item.query)
    state = start(model, primary, peers, fuse)
    chunks = ctx.chunks()
    peer_ctx = [encode_peer(experts[m].tokenizer, experts[m].bos_id, chunks) for m in state.peers]
    last = extend(model, state, torch.tensor([ctx.ids]),
                  peer_ids=[torch.tensor([p.ids]) for p in peer_ctx],
                  owners=[torch.tensor([p.owners]) for p in peer_ctx])[:, -1]   # (1, d)
    conts = [encode_pair(prim, item.query, x) for x in item.continuations]
    rows = [c.ids[c.target_from:] for c in conts]
    n_ctx = len(ctx.ids)
    peer_rows = [[encode_peer(experts[m].tokenizer, experts[m].bos_id,
                              c.chunks()[c.target_from:], first_owner=n_ctx) for c in conts]
                 for m in state.peers]
    width = max(len(r) for r in rows)
    state = state.repeat(len(rows))
    hidden = extend(
        model, state, _pad(rows, 0), _pad([[1] * len(r) for r in rows], 0),
        peer_ids=[_pad([p.ids for p in pr], 0) for pr in peer_rows],
        owners=[_pad([p.owners for p in pr], n_ctx + width) for pr in peer_rows],
        peer_mask=[_pad([[1] * len(p.ids) for p in pr], 0) for pr in peer_rows])  # (C, w, d)
    inputs = torch.cat([last.expand(len(rows), -1).unsqueeze(1), hidden[:, :-1]], dim=1)
    with torch.no_grad():
        logp = experts[primary].logits(inputs).log_softmax(-1)               # (C, w, V)
    targets = _pad(rows, 0)
    picked = logp.gather(2, targets.unsqueeze(2)).squeeze(2)                 # (C, w)
    valid = _pad([[1] * len(r) for r in rows], 0).bool()
    totals = (picked * valid).sum(1).tolist()
    return ChoiceScores(tuple(float(t) for t in totals),
                        tuple(len(x) for x in item.continuations))
