"""The fused model's router: a two-layer MLP on the frozen sentence encoder (paper 3.2).

It scores the experts for a query; the top-K are active and the highest-scoring one is the
primary, the only expert that decodes. Routing is per query (the whole prompt), not per token.
"""

from __future__ import annotations

import torch
from torch import nn


class PrimaryRouter(nn.Module):
    def __init__(self, d_in: int, hidden: int, n_experts: int) -> None:
        super().__init__()
        last = nn.Linear(hidden, n_experts)
        nn.init.zeros_(last.weight)          # untrained: every expert scores the same
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), last)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, d_in) query embeddings -> (B, M) expert scores."""
        scores: torch.Tensor = self.net(emb)
        return scores


def choose(scores: torch.Tensor, k: int, default: int = 0) -> tuple[int, list[int]]:
    """The primary and the active experts (best first) of one query's (M,) scores. Ties
    (an untrained router) go to ``default``, then to config order."""
    m = scores.shape[-1]
    bonus = torch.zeros(m)
    bonus[default] = 1e-6
    order = torch.argsort(scores.detach().float().cpu() + bonus, descending=True).tolist()
    active = [int(i) for i in order[: min(k, m)]]
    return active[0], active
