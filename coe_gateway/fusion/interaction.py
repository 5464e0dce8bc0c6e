"""One interaction layer of Mixture of Thoughts (paper section 3.3), nanoGPT-style.

At the end of stack ``l`` every active expert ``m`` projects its residual stream into a shared
latent, ``z_m = LN(F_m h_m)`` (``F_m``: d_m -> d); the primary's latents query the latents of
every active expert, itself included, through one multi-head attention whose ``W_Q, W_K,
W_V, W_O`` are shared across experts; the result goes back through the primary's ``R_p``
(d -> d_m) and is added to its residual stream. ``R`` starts at zero, so an untrained layer
adds exactly nothing and the fused model is its frozen primary.

Deviations from the paper, all named in the README: a pre-LN on the latents (the paper
mentions a LayerNorm without placing it); per-head scaling ``sqrt(d / H)`` (the paper writes
``sqrt(d)``); peers do not get the paper's self-adapter ``h_m += R_m z_m``, so a peer is
exactly its frozen self and its states can be computed once ("peer-frozen").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Interaction(nn.Module):
    def __init__(self, widths: list[int], d: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"latent width {d} is not a multiple of {heads} heads")
        self.d, self.heads, self.dropout = d, heads, dropout
        self.down = nn.ModuleList(nn.Linear(w, d) for w in widths)   # F_m: d_m -> d
        ups = [nn.Linear(d, w) for w in widths]                      # R_m: d -> d_m
        for up in ups:
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)
        self.up = nn.ModuleList(ups)
        self.norm = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.o = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def latents(self, m: int, h: torch.Tensor) -> torch.Tensor:
        """(B, T, d_m) residual stream of expert ``m`` -> (B, T, d) shared latents."""
        z: torch.Tensor = self.norm(self.down[m](h))
        return z

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.d // self.heads).transpose(1, 2)  # (B, H, T, hd)

    def keys(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, d) latents -> keys and values (B, H, S, hd); cached while decoding."""
        k, v = self.kv(z).split(self.d, dim=-1)
        return self._heads(k), self._heads(v)

    def attend(self, m: int, z: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None) -> torch.Tensor:
        """The primary ``m``'s update: its latents z (B, N, d) attend over k, v (B, H, S, hd)
        where ``mask`` (B, 1, N, S) allows (None: all); returns (B, N, d_m)."""
        q = self._heads(self.q(z))                                           # (B, H, N, hd)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, N, hd)
        b, _, n, _ = y.shape
        y = y.transpose(1, 2).reshape(b, n, self.d)                          # (B, N, d)
        update: torch.Tensor = self.up[m](self.drop(self.o(y)))              # (B, N, d_m)
        return update
