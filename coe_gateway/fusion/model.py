"""Mixture of Thoughts: frozen experts fused by cross-attention between their stacks.

``MixtureOfThoughts`` holds the frozen experts (not parameters: never saved, never trained),
one :class:`~coe_gateway.fusion.interaction.Interaction` per stack boundary and the router.
``forward`` is the teacher-forced pass used for training and for scoring continuations: the
peers run first (they are frozen and read nothing from the primary, so their boundary states
can also be passed in, precomputed), then the primary runs with a tap at each boundary that
adds the interaction's update to its residual stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from coe_gateway.fusion.align import encode_pair, encode_peer, visibility
from coe_gateway.fusion.config import MotConfig
from coe_gateway.fusion.experts import FrozenExpert
from coe_gateway.fusion.interaction import Interaction
from coe_gateway.fusion.router import PrimaryRouter

PeerStates = list[list[torch.Tensor]]
"""Per peer, per stage: its residual stream (B, S_m, d_m) at that stack boundary."""


@dataclass
class Batch:
    """Sequences for one primary, right-padded; ``targets`` holds the next-token id where a
    position is scored and -100 elsewhere."""

    primary: int
    peers: list[int]
    ids: torch.Tensor                 # (B, N)
    mask: torch.Tensor                # (B, N)
    targets: torch.Tensor             # (B, N)
    peer_ids: list[torch.Tensor]      # per peer (B, S_m)
    peer_mask: list[torch.Tensor]     # per peer (B, S_m)
    allowed: torch.Tensor             # (B, 1, N, N + sum S_m)
    chars: torch.Tensor               # (B,) characters of each continuation

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def collate(experts: Sequence[FrozenExpert], primary: int, peers: Sequence[int],
            pairs: Sequence[tuple[str, str]]) -> Batch:
    """A batch of (context, continuation) pairs; the continuation's tokens are scored."""
    prim = experts[primary]
    texts = [encode_pair(prim.tokenizer, c, x) for c, x in pairs]
    n = max(len(t.ids) for t in texts)
    peer_texts = [[encode_peer(experts[m].tokenizer, experts[m].bos_id, t.chunks())
                   for t in texts] for m in peers]
    targets = []
    for t in texts:
        row = [-100] * n
        for i in range(t.target_from, len(t.ids)):
            row[i - 1] = t.ids[i]
        targets.append(row)
    masks = []
    for b, t in enumerate(texts):
        owners = [list(p[b].owners) for p in peer_texts]
        width = [max(len(p[j].owners) for j in range(len(texts))) for p in peer_texts]
        owners = [o + [n] * (w - len(o)) for o, w in zip(owners, width)]  # pads: never seen
        masks.append(visibility(n, owners))
    return Batch(
        primary=primary, peers=list(peers),
        ids=_pad([t.ids for t in texts], 0),
        mask=_pad([[1] * len(t.ids) for t in texts], 0),
        targets=torch.tensor(targets, dtype=torch.long),
        peer_ids=[_pad([p.ids for p in pt], 0) for pt in peer_texts],
        peer_mask=[_pad([[1] * len(p.ids) for p in pt], 0) for pt in peer_texts],
        allowed=torch.stack(masks).unsqueeze(1),
        chars=torch.tensor([max(len(x), 1) for _, x in pairs], dtype=torch.float32),
    )


class MixtureOfThoughts(nn.Module):
    def __init__(self, experts: Sequence[FrozenExpert], cfg: MotConfig, d_router: int) -> None:
        super().__init__()
        if len(experts) < 2:
            raise ValueError("a fused model needs at least two experts")
        self.cfg = cfg
        self.experts = list(experts)      # plain list: frozen, not part of the state dict
        widths = [e.width for e in experts]
        self.layers = nn.ModuleList(
            Interaction(widths, cfg.latent, cfg.heads, cfg.dropout) for _ in range(cfg.stacks))
        self.router = PrimaryRouter(d_router, cfg.router_hidden, len(experts))

    def layer(self, stage: int) -> Interaction:
        """The interaction layer at stack boundary ``stage``."""
        layer = self.layers[stage]
        assert isinstance(layer, Interaction)
        return layer

    def peer_states(self, batch: Batch) -> PeerStates:
        """Each peer's residual stream at its stack boundaries (frozen: no gradient)."""
        out: PeerStates = []
        for m, ids, mask in zip(batch.peers, batch.peer_ids, batch.peer_mask):
            caught: list[torch.Tensor] = []

            def catch(_stage: int, h: torch.Tensor) -> None:
                caught.append(h)

            with torch.no_grad(), self.experts[m].tapped(catch):
                self.experts[m].hidden(ids, mask)
            out.append(caught)
        return out

    def forward(self, batch: Batch, states: PeerStates | None = None) -> torch.Tensor:
        """(B, N) log-probability of each scored target token under the fused primary (0 at
        positions not scored)."""
        hidden = self.hidden(batch, states)                                  # (B, N, d_p)
        scored = batch.targets >= 0
        logits = self.experts[batch.primary].logits(hidden[scored])          # (T, V)
        logp = logits.log_softmax(-1).gather(1, batch.targets[scored].unsqueeze(1)).squeeze(1)
        out = torch.zeros(batch.targets.shape, dtype=logp.dtype)
        out[scored] = logp
        return out

    def hidden(self, batch: Batch, states: PeerStates | None = None) -> torch.Tensor:
        """(B, N, d_p) the fused primary's final hidden states (teacher-forced)."""
        states = self.peer_states(batch) if states is None and self.cfg.cross_attention \
            else states
        p, n = batch.primary, batch.ids.shape[1]

        def tap(stage: int, h: torch.Tensor) -> torch.Tensor:
            layer = self.layer(stage)
            z = layer.latents(p, h)                                          # (B, N, d)
            zs, allowed = [z], batch.allowed[..., :n]
            if self.cfg.cross_attention and states:
                zs += [layer.latents(m, s[stage]) for m, s in zip(batch.peers, states)]
                allowed = batch.allowed
            k, v = layer.keys(torch.cat(zs, dim=1))                          # (B, H, S, hd)
            return h + layer.attend(p, z, k, v, allowed)

        expert = self.experts[p]
        with expert.tapped(tap):
            hidden, _ = expert.hidden(batch.ids, batch.mask)                 # (B, N, d_p)
        return hidden


def frozen_logprobs(expert: FrozenExpert, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
    """(B,) summed log-probability of each continuation under the expert alone."""
    batch = collate([expert, expert], 0, [], pairs)
    with torch.no_grad():
        hidden, _ = expert.hidden(batch.ids, batch.mask)
        scored = batch.targets >= 0
        logp = expert.logits(hidden[scored]).log_softmax(-1)
        picked = logp.gather(1, batch.targets[scored].unsqueeze(1)).squeeze(1)
    out = torch.zeros(batch.targets.shape)
    out[scored] = picked
    return out.sum(1)
