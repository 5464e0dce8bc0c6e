"""OpenAI chat-completion protocol models (the subset the gateway reads) and helpers.

The gateway validates the fields it needs (types, ranges, non-empty ``messages``) and keeps
every other field (``extra="allow"``): unknown fields travel upstream unchanged and are
logged. The request's own extension field ``coe`` (policy override, quality target, router)
never goes upstream. Responses carry ``coe_routing``, an extension field saying which expert
answered and why.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# fields of ChatCompletionRequest the gateway knows; anything else is "unknown" (kept, logged)
KNOWN_REQUEST_FIELDS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "temperature", "top_p", "n",
        "max_tokens", "max_completion_tokens", "stop", "seed", "presence_penalty",
        "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user", "tools",
        "tool_choice", "parallel_tool_calls", "response_format", "coe", "metadata", "store",
        "service_tier", "modalities", "reasoning_effort", "prediction", "audio",
    }
)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None
    image_url: dict[str, Any] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class RoutingOptions(BaseModel):
    """The request extension field ``coe``: how the caller wants this request routed."""

    model_config = ConfigDict(extra="forbid")
    policy: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    router: str | None = None
    category: str | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=16)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    user: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    coe: RoutingOptions | None = None

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @property
    def unknown_fields(self) -> list[str]:
        return sorted(set(self.model_extra or {}) - KNOWN_REQUEST_FIELDS)

    @property
    def output_budget(self) -> int | None:
        """The caller's cap on generated tokens, if any."""
        return self.max_completion_tokens or self.max_tokens

    def upstream_body(self, upstream_model: str) -> dict[str, Any]:
        """The JSON body sent to an expert: the caller's fields as sent, model replaced,
        the ``coe`` extension removed."""
        body = self.model_dump(exclude_unset=True, exclude={"coe"}, mode="json")
        body["model"] = upstream_model
        return body

    def has_image(self) -> bool:
        return any(
            isinstance(m.content, list) and any(p.type == "image_url" for p in m.content)
            for m in self.messages
        )


def message_text(message: ChatMessage) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(p.text for p in message.content if p.text)


def routing_text(request: ChatCompletionRequest, max_chars: int = 4000) -> str:
    """The text a router sees: the last user turn, preceded by the system prompt, trimmed
    from the front to ``max_chars`` (the most recent words matter most)."""
    system = [message_text(m) for m in request.messages if m.role in ("system", "developer")]
    users = [message_text(m) for m in request.messages if m.role == "user"]
    last = users[-1] if users else message_text(request.messages[-1])
    text = "\n".join([*system[:1], last]).strip()
    return text[-max_chars:]


def prompt_chars(request: ChatCompletionRequest) -> int:
    return sum(len(message_text(m)) for m in request.messages)


def estimate_prompt_tokens(request: ChatCompletionRequest) -> int:
    """A tokenizer-free upper-ish estimate: ~4 characters a token plus per-message overhead."""
    return prompt_chars(request) // 4 + 4 * len(request.messages) + 3


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "coe-gateway"
    coe: dict[str, Any] = Field(default_factory=dict)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
