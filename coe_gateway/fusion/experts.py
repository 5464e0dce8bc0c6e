"""A frozen expert of the fused model: a Hugging Face causal LM, its tokenizer, and taps.

The fused model never edits an expert's weights. It reads and writes the expert's residual
stream at the *stack boundaries*: the expert's ``L`` layers are cut into ``Q`` contiguous
stacks, and the output of the last layer of stack ``l`` (``l = 0..Q-1``) is where interaction
layer ``l`` sits (the last one after the final block, before the final norm). A forward hook
on that layer hands its output to a callback, which may return a replacement.

Rounding when ``Q`` does not divide ``L`` (the paper is silent): boundary ``l`` is after layer
``round(L * (l + 1) / Q)``, so stacks differ in length by at most one and the last boundary is
always the final block.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

Tap = Callable[[int, torch.Tensor], torch.Tensor | None]
"""``tap(stage, hidden)`` at a stack boundary; a returned tensor replaces the layer output."""


def boundaries(n_layers: int, q: int) -> list[int]:
    """The 1-based index of the last layer of each of the ``q`` stacks."""
    if not 1 <= q <= n_layers:
        raise ValueError(f"stacks q={q} must be between 1 and the {n_layers} layers")
    return [round(n_layers * (s + 1) / q) for s in range(q)]


@dataclass
class FrozenExpert:
    """One expert: model (eval mode, no gradients), tokenizer and its stack boundaries."""

    name: str
    model: Any  # a transformers PreTrainedModel (ForCausalLM); untyped upstream
    tokenizer: Any  # a fast tokenizer (PreTrainedTokenizerFast)
    stacks: list[int]

    @classmethod
    def load(cls, name: str, path: str | Path, q: int) -> FrozenExpert:
        """Load a checkpoint directory (``coe-gateway models prepare`` writes them)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model: Any = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        model.eval()
        model.requires_grad_(False)
        return cls(name, model, tokenizer, boundaries(model.config.num_hidden_layers, q))

    @property
    def width(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def bos_id(self) -> int | None:
        """The BOS id the tokenizer prepends to every text (Gemma), else None (SmolLM2)."""
        ids = self.tokenizer("a")["input_ids"]
        bos = self.tokenizer.bos_token_id
        return int(bos) if bos is not None and ids and ids[0] == bos else None

    @property
    def eos_ids(self) -> set[int]:
        """Token ids that end a generation (config's eos list, the tokenizer's eos)."""
        ids: set[int] = set()
        for src in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if isinstance(src, int):
                ids.add(src)
            elif src:
                ids.update(int(i) for i in src)
        return ids

    def layers(self) -> nn.ModuleList:
        return self.model.model.layers  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def tapped(self, tap: Tap) -> Iterator[None]:
        """Within the block, ``tap(stage, hidden)`` runs at each stack boundary."""
        handles = []
        for stage, last in enumerate(self.stacks):
            def hook(_m: nn.Module, _a: Any, out: Any, stage: int = stage) -> Any:
                hidden = out[0] if isinstance(out, tuple) else out
                new = tap(stage, hidden)
                if new is None:
                    return None
                return (new, *out[1:]) if isinstance(out, tuple) else new
            handles.append(self.layers()[last - 1].register_forward_hook(hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor | None = None,
               cache: Any = None) -> tuple[torch.Tensor, Any]:
        """Final (normed) hidden states (B, T, d) and the KV cache, taps applied."""
        out = self.model.model(input_ids=ids, attention_mask=mask, past_key_values=cache,
                               use_cache=cache is not None)
        return out.last_hidden_state, out.past_key_values

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM-head logits of hidden states (..., d) -> (..., V), softcapped where configured."""
        logits: torch.Tensor = self.model.lm_head(hidden)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)
