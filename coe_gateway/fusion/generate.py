"""Generating with the fused model: route, prefill, then decode token by token.

The router picks the primary from the prompt; the prompt is the primary's own chat template
(so that an untrained fused model answers exactly as its frozen primary would). Each
generated primary token's text is fed to the peers as soon as it is known (the chunking of
:mod:`coe_gateway.fusion.align`; bytes that do not yet make a character wait for the token
that completes them). Every step reuses each expert's KV cache and the interaction layers'
cached keys and values (:mod:`coe_gateway.fusion.cached`), so a step costs one primary token
and the peers' few tokens of its chunk.

``Generation`` is an iterator of text deltas that checks ``cancel`` before every step: the
server sets it when the client goes away, and the loop stops within one token.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from coe_gateway.fusion.align import encode_pair, encode_peer
from coe_gateway.fusion.cached import FusedState, extend, start
from coe_gateway.fusion.model import MixtureOfThoughts
from coe_gateway.fusion.router import choose


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Generation:
    """One request's decoding; iterate for text deltas, then read the fields."""

    model: MixtureOfThoughts
    messages: Sequence[dict[str, Any]]
    sampling: Sampling
    route_text: str
    cancel: threading.Event = field(default_factory=threading.Event)
    primary: int = 0
    active: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    peer_tokens: int = 0
    finish_reason: str | None = None

    def _route(self) -> None:
        from coe_gateway.routers.embedding import get_encoder

        emb = torch.from_numpy(get_encoder(self.model.cfg.encoder).encode([self.route_text]))
        with torch.no_grad():
            scores = self.model.router(emb.float())[0]
        self.primary, self.active = choose(scores, self.model.cfg.top_k)

    def _prompt(self) -> str:
        tok = self.model.experts[self.primary].tokenizer
        text: str = tok.apply_chat_template(list(self.messages), tokenize=False,
                                            add_generation_prompt=True)
        return text

    def _feed(self, state: FusedState, ids: list[int], chunks: list[str]) -> torch.Tensor:
        experts = self.model.experts
        peers = [encode_peer(experts[m].tokenizer, experts[m].bos_id, chunks, state.n)
                 for m in state.peers]
        self.peer_tokens += sum(len(p.ids) for p in peers)
        hidden = extend(self.model, state, torch.tensor([ids]),
                        peer_ids=[torch.tensor([p.ids]) for p in peers],
                        owners=[torch.tensor([p.owners]) for p in peers])
        logits: torch.Tensor = experts[self.primary].logits(hidden[0, -1])  # (V,)
        return logits

    def _sample(self, logits: torch.Tensor, gen: torch.Generator | None) -> int:
        s = self.sampling
        if s.temperature <= 0:
            return int(logits.argmax())
        probs = (logits / s.temperature).softmax(-1)
        if s.top_p < 1:
            sorted_p, order = probs.sort(descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < s.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        return int(torch.multinomial(probs, 1, generator=gen))

    def __iter__(self) -> Iterator[str]:
        self._route()
        tok = self.model.experts[self.primary].tokenizer
        prompt = self._prompt()
        special = not (tok.bos_token and prompt.startswith(tok.bos_token))
        ctx = encode_pair(tok, prompt) if special else _encode_plain(tok, prompt)
        self.prompt_tokens = len(ctx.ids)
        state = start(self.model, self.primary, [m for m in self.active if m != self.primary])
        gen = torch.Generator().manual_seed(self.sampling.seed) \
            if self.sampling.seed is not None else None
        eos = self.model.experts[self.primary].eos_ids
        with torch.no_grad():
            logits = self._feed(state, ctx.ids, ctx.chunks())
            out_ids: list[int] = []
            text = ""
            while True:
                if self.cancel.is_set():
                    self.finish_reason = "cancelled"
                    return
                if self.completion_tokens >= self.sampling.max_tokens:
                    self.finish_reason = "length"
                    return
                token = self._sample(logits, gen)
                self.completion_tokens += 1
                if token in eos:
                    self.finish_reason = "stop"
                    return
                out_ids.append(token)
                full = tok.decode(out_ids, skip_special_tokens=True)
                chunk = "" if full.endswith("\ufffd") else full[len(text):]
                text += chunk
                hit = _stop_at(text, self.sampling.stop)
                if hit is not None:
                    delta = text[:hit][len(text) - len(chunk):]
                    if delta:
                        yield delta
                    self.finish_reason = "stop"
                    return
                if chunk:
                    yield chunk
                logits = self._feed(state, [token], [chunk])


def _encode_plain(tok: Any, text: str) -> Any:
    """A prompt whose template already wrote the BOS: no specials added again."""
    from coe_gateway.fusion.align import PrimaryText

    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return PrimaryText(text, list(enc["input_ids"]),
                       [int(e) for _, e in enc["offset_mapping"]], len(enc["input_ids"]))


def _stop_at(text: str, stops: Sequence[str]) -> int | None:
    """Where the first stop string starts in ``text`` (None: none occurs)."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None
