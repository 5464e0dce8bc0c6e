"""The fused model run incrementally: a KV cache for every active expert and, at every
interaction layer, the keys and values of all latents seen so far.

``extend`` feeds new primary tokens (and each peer's tokens of their chunks) and returns the
primary's final hidden states for them; decoding calls it with one primary token at a time,
scoring continuations calls it once for a shared context and once for all choices together
(after ``repeat``). New primary rows attend to every cached latent, to their own new
positions causally and to the new peer tokens their position owns (see
:mod:`coe_gateway.fusion.align`), so ``extend`` piece by piece equals the teacher-forced
``MixtureOfThoughts.forward`` of the whole text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from coe_gateway.fusion.model import MixtureOfThoughts


@dataclass
class FusedState:
    """What one fused pass has seen (batch of B sequences)."""

    primary: int
    peers: list[int]
    fuse: bool
    caches: list[Any]                                   # [primary, *peers] KV caches
    masks: list[torch.Tensor]                           # [primary, *peers] (B, seen) 0/1
    kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # per stage
    valid: torch.Tensor | None = None                   # (B, S) cached latents not padding
    n: int = 0                                          # primary positions seen

    def repeat(self, k: int) -> FusedState:
        """Each sequence ``k`` times (B -> B k), for choices sharing a context."""
        for c in self.caches:
            c.batch_repeat_interleave(k)
        return FusedState(
            self.primary, self.peers, self.fuse, self.caches,
            [m.repeat_interleave(k, dim=0) for m in self.masks],
            [(a.repeat_interleave(k, dim=0), b.repeat_interleave(k, dim=0))
             for a, b in self.kv],
            None if self.valid is None else self.valid.repeat_interleave(k, dim=0), self.n)


def start(model: MixtureOfThoughts, primary: int, peers: list[int], fuse: bool = True
          ) -> FusedState:
    """An empty state; ``fuse=False`` runs the primary alone (its frozen self)."""
    peers = peers if fuse and model.cfg.cross_attention else []
    experts = [model.experts[m] for m in [primary, *peers]]
    return FusedState(primary, peers, fuse, [e.new_cache() for e in experts],
                      [torch.zeros(1, 0, dtype=torch.long) for _ in experts])


def _peer_states(model: MixtureOfThoughts, state: FusedState, peer_ids: list[torch.Tensor],
                 peer_mask: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    out = []
    for j, (m, ids, mask) in enumerate(zip(state.peers, peer_ids, peer_mask)):
        caught: list[torch.Tensor] = []
        expert = model.experts[m]
        full = torch.cat([state.masks[j + 1].expand(ids.shape[0], -1), mask], dim=1)
        if ids.shape[1]:
            with expert.tapped(lambda _s, h: caught.append(h)):
                _, state.caches[j + 1] = expert.hidden(ids, full, state.caches[j + 1])
        else:
            caught = [torch.zeros(ids.shape[0], 0, expert.width) for _ in expert.stacks]
        state.masks[j + 1] = full
        out.append(caught)
    return out


def _allowed(state: FusedState, n: int, mask: torch.Tensor,
             owners: list[torch.Tensor], peer_mask: list[torch.Tensor]) -> torch.Tensor:
    """(B, 1, n, S + n + sum s_m): which latents each new primary row may attend to."""
    b = mask.shape[0]
    rows = torch.arange(state.n, state.n + n).view(1, n, 1)                   # (1, n, 1)
    cached = (state.valid if state.valid is not None else torch.ones(b, 0, dtype=torch.bool))
    blocks = [cached.view(b, 1, -1).expand(b, n, -1)]
    own = torch.arange(state.n, state.n + n).view(1, 1, n) <= rows           # (1, n, n)
    blocks.append(own & mask.bool().view(b, 1, n))
    for o, pm in zip(owners, peer_mask):
        blocks.append((o.view(b, 1, -1) <= rows) & pm.bool().view(b, 1, -1))
    return torch.cat(blocks, dim=2).unsqueeze(1)


def extend(model: MixtureOfThoughts, state: FusedState, ids: torch.Tensor,
           mask: torch.Tensor | None = None, peer_ids: list[torch.Tensor] | None = None,
           owners: list[torch.Tensor] | None = None, peer_mask: list[torch.Tensor] | None = None
           ) -> torch.Tensor:
    """Feed ``ids`` (B, n) to the primary (and each peer its tokens (B, s_m), owned by the
    absolute primary positions ``owners``); returns the primary's hidden states (B, n, d)."""
    b, n = ids.shape
    mask = torch.ones(b, n, dtype=torch.long) if mask is None else mask
    peer_ids = peer_ids or [torch.zeros(b, 0, dtype=torch.long) for _ in state.peers]
    owners = owners or [torch.zeros(b, 0, dtype=torch.long) for _ in state.peers]
    peer_mask = peer_mask or [torch.ones_like(p) for p in peer_ids]
    with torch.no_grad():
        states = _peer_states(model, state, peer_ids, peer_mask)
        allowed = _allowed(state, n, mask, owners, peer_mask) if state.fuse else None
        p, expert = state.primary, model.experts[state.primary]

        def tap(stage: int, h: torch.Tensor) -> torch.Tensor:
            layer = model.layer(stage)
            z = layer.latents(p, h)                                           # (B, n, d)
            zs = [z] + [layer.latents(m, s[stage]) for m, s in zip(state.peers, states)]
            k, v = layer.keys(torch.cat(zs, dim=1))                           # (B, H, s, hd)
            if len(state.kv) > stage:
                k = torch.cat([state.kv[stage][0], k], dim=2)
                v = torch.cat([state.kv[stage][1], v], dim=2)
                state.kv[stage] = (k, v)
            else:
                state.kv.append((k, v))
            return h + layer.attend(p, z, k, v, allowed)

        full = torch.cat([state.masks[0].expand(b, -1), mask], dim=1)
        if state.fuse:
            with expert.tapped(tap):
                hidden, state.caches[0] = expert.hidden(ids, full, state.caches[0])
        else:
            hidden, state.caches[0] = expert.hidden(ids, full, state.caches[0])
    state.masks[0] = full
    if state.fuse:
        new_valid = torch.cat([mask.bool(), *[pm.bool() for pm in peer_mask]], dim=1)
        state.valid = new_valid if state.valid is None else torch.cat([state.valid, new_valid],
                                                                      dim=1)
    state.n += n
    return hidden
