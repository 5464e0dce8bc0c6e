"""The fused expert's answers on the wire: OpenAI ``chat.completion`` bodies and
``chat.completion.chunk`` events, plus the extension they carry.

Every answer of a fused server carries ``coe_fusion``: ``{"fused": true, "primary": <expert>,
"active": [<experts>], "peer_tokens": N}`` (in the body; in a stream's first chunk, with the
peer tokens counted so far, and again in the chunk with the ``finish_reason``, with all of
them). The gateway reads it back (:func:`fused_view`) for the attempts of experts whose
backend is in :data:`FUSED_KINDS`, so ``coe_routing.attempts[i].fused`` says which experts
answered.

No torch here: the gateway imports this module on its hot path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from coe_gateway.protocol import new_completion_id
from coe_gateway.sse import dumps

FUSION_FIELD = "coe_fusion"
MOT_KIND = "mot"
FUSED_KINDS = frozenset({MOT_KIND})
"""Backends of fused experts: their answers carry :data:`FUSION_FIELD`."""


def extension(primary: str, active: list[str], peer_tokens: int) -> dict[str, Any]:
    """The ``coe_fusion`` value of one answer."""
    return {"fused": True, "primary": primary, "active": active, "peer_tokens": peer_tokens}


def fused_view(obj: Any) -> dict[str, Any] | None:
    """``{"primary", "active"}`` of an answer's (body's or first chunk's) ``coe_fusion``;
    None when it has none."""
    ext = obj.get(FUSION_FIELD) if isinstance(obj, dict) else None
    if not isinstance(ext, dict):
        return None
    return {"primary": ext.get("primary"), "active": ext.get("active")}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


@dataclass(frozen=True)
class Reply:
    """The fixed fields of one answer's body or chunks."""

    model: str
    id: str = field(default_factory=new_completion_id)
    created: int = field(default_factory=lambda: int(time.time()))

    def body(self, text: str, finish_reason: str | None, usage: dict[str, int],
             ext: dict[str, Any]) -> dict[str, Any]:
        """The whole ``chat.completion``."""
        return {"id": self.id, "object": "chat.completion", "created": self.created,
                "model": self.model, FUSION_FIELD: ext,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": None, "finish_reason": finish_reason}],
                "usage": usage}

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None,
              ext: dict[str, Any] | None = None) -> dict[str, Any]:
        """One ``chat.completion.chunk`` of choice 0 (``ext``: the extension, when given)."""
        out: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk",
                               "created": self.created, "model": self.model}
        if ext is not None:
            out[FUSION_FIELD] = ext
        out["choices"] = [{"index": 0, "delta": delta, "logprobs": None,
                           "finish_reason": finish_reason}]
        return out

    def usage_chunk(self, usage: dict[str, int]) -> dict[str, Any]:
        """The last chunk of ``stream_options.include_usage``: no choices, the usage."""
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage}


def event(obj: Any) -> bytes:
    """One SSE event: ``data: <json>`` and its blank line."""
    return b"data: " + dumps(obj) + b"\n\n"
