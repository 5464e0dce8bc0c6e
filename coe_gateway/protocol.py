"""The OpenAI chat-completion protocol as the gateway reads it: a thin, validated view of the
request body, and the models list.

:class:`ChatRequest` is parsed from the raw body once (orjson) and validates only the fields
the gateway itself uses or that have a range (types, ranges, non-empty ``messages``, roles,
content parts); every other field is kept exactly as sent and travels upstream unchanged
(unknown ones are also logged). No pydantic model is built on the hot path. Errors are
:class:`~coe_gateway.errors.RequestError` naming the offending field in ``param``
(``messages[0].content``), as the OpenAI API does.

The request's own extension field ``coe`` (:class:`RoutingOptions`: policy override, params,
category, strategy) never goes upstream. Responses carry ``coe_routing``, an extension field
saying which expert answered and why.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from coe_gateway.errors import RequestError

# fields of a chat request the gateway knows; anything else is "unknown" (kept, logged)
KNOWN_REQUEST_FIELDS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "temperature", "top_p", "n",
        "max_tokens", "max_completion_tokens", "stop", "seed", "presence_penalty",
        "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user", "tools",
        "tool_choice", "parallel_tool_calls", "response_format", "coe", "metadata", "store",
        "service_tier", "modalities", "reasoning_effort", "prediction", "audio",
    }
)
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _number(lo: float, hi: float) -> Callable[[str, Any], None]:
    def check(name: str, v: Any) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _invalid(name, "must be a number", v)
        if not lo <= v <= hi:
            raise _invalid(name, f"must be between {lo:g} and {hi:g}", v)
    return check


def _integer(lo: int, hi: int | None = None) -> Callable[[str, Any], None]:
    def check(name: str, v: Any) -> None:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _invalid(name, "must be an integer", v)
        if v < lo or (hi is not None and v > hi):
            bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
            raise _invalid(name, f"must be {bound}", v)
    return check


def _of(*types: type, label: str) -> Callable[[str, Any], None]:
    def check(name: str, v: Any) -> None:
        if isinstance(v, bool) and bool not in types:
            raise _invalid(name, f"must be {label}", v)
        if not isinstance(v, types):
            raise _invalid(name, f"must be {label}", v)
    return check


def _stop(name: str, v: Any) -> None:
    if not (isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))):
        raise _invalid(name, "must be a string or a list of strings", v)


CHECKS: dict[str, Callable[[str, Any], None]] = {
    "stream": _of(bool, label="a boolean"),
    "stream_options": _of(dict, label="an object"),
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "n": _integer(1, 16),
    "max_tokens": _integer(1),
    "max_completion_tokens": _integer(1),
    "stop": _stop,
    "seed": _integer(-(2**63), 2**64),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "logit_bias": _of(dict, label="an object"),
    "logprobs": _of(bool, label="a boolean"),
    "top_logprobs": _integer(0, 20),
    "user": _of(str, label="a string"),
    "tools": _of(list, label="an array"),
    "tool_choice": _of(str, dict, label="a string or an object"),
    "response_format": _of(dict, label="an object"),
}
"""Field -> its check; a field that is absent or ``null`` is not checked."""


def _invalid(name: str, why: str, value: Any) -> RequestError:
    shown = "" if isinstance(value, (dict, list)) else f" (got {value!r})"
    return RequestError(f"Invalid value for '{name}': {why}{shown}", param=name)


def _missing(name: str) -> RequestError:
    return RequestError(f"'{name}' is a required property", param=name)


@dataclass(frozen=True, slots=True)
class RoutingOptions:
    """The request extension field ``coe``: how the caller wants this request routed."""

    policy: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    router: str | None = None
    category: str | None = None
    strategy: str | None = None
    answer: str | None = None  # the answer extractor a cascade compares answers with

    @classmethod
    def parse(cls, value: Any) -> RoutingOptions:
        if not isinstance(value, dict):
            raise _invalid("coe", "must be an object", value)
        unknown = sorted(set(value) - {"policy", "params", "router", "category", "strategy",
                                       "answer"})
        if unknown:
            raise RequestError(f"Invalid value for 'coe': unknown field '{unknown[0]}'",
                               param=f"coe.{unknown[0]}")
        for key in ("policy", "router", "category", "strategy", "answer"):
            if value.get(key) is not None and not isinstance(value[key], str):
                raise _invalid(f"coe.{key}", "must be a string", value[key])
        params = value.get("params") or {}
        if not isinstance(params, dict):
            raise _invalid("coe.params", "must be an object", params)
        answer = value.get("answer")
        if answer is not None:
            from coe_gateway.answers import EXTRACTORS

            if answer not in EXTRACTORS:
                raise RequestError(f"Unknown answer extractor '{answer}'; known: "
                                   f"{', '.join(sorted(EXTRACTORS))}", param="coe.answer")
        return cls(value.get("policy"), params, value.get("router"), value.get("category"),
                   value.get("strategy"), answer)


def _check_message(i: int, m: Any) -> None:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise _invalid(where, "must be an object", m)
    role = m.get("role")
    if role is None:
        raise _missing(f"{where}.role")
    if role not in ROLES:
        raise _invalid(f"{where}.role", f"must be one of {sorted(ROLES)}", role)
    content = m.get("content")
    if isinstance(content, list):
        for j, part in enumerate(content):
            _check_part(f"{where}.content[{j}]", part)
    elif content is not None and not isinstance(content, str):
        raise _invalid(f"{where}.content", "must be a string or an array of content parts",
                       content)
    for key, types, label in (("name", (str,), "a string"), ("tool_call_id", (str,), "a string"),
                              ("tool_calls", (list,), "an array")):
        if m.get(key) is not None and not isinstance(m[key], types):
            raise _invalid(f"{where}.{key}", f"must be {label}", m[key])


def _check_part(where: str, part: Any) -> None:
    if not isinstance(part, dict):
        raise _invalid(where, "must be an object", part)
    if not isinstance(part.get("type"), str):
        raise _missing(f"{where}.type") if "type" not in part else _invalid(
            f"{where}.type", "must be a string", part["type"])
    if part.get("text") is not None and not isinstance(part["text"], str):
        raise _invalid(f"{where}.text", "must be a string", part["text"])
    if part.get("image_url") is not None and not isinstance(part["image_url"], dict):
        raise _invalid(f"{where}.image_url", "must be an object", part["image_url"])


class ChatRequest:
    """A validated chat-completion request: ``body`` is the caller's JSON object as sent."""

    __slots__ = ("body", "model", "messages", "stream", "coe", "_sizes")

    def __init__(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        if model is None:
            raise _missing("model")
        if not isinstance(model, str) or not model.strip():
            raise _invalid("model", "must be a non-empty string", model)
        messages = body.get("messages")
        if messages is None:
            raise _missing("messages")
        if not isinstance(messages, list) or not messages:
            raise _invalid("messages", "must be a non-empty array", messages)
        for i, m in enumerate(messages):
            _check_message(i, m)
        for name, check in CHECKS.items():
            v = body.get(name)
            if v is not None:
                check(name, v)
        coe = body.get("coe")
        self.body = body
        self.model: str = model
        self.messages: list[dict[str, Any]] = messages
        self.stream: bool = bool(body.get("stream"))
        self.coe: RoutingOptions | None = None if coe is None else RoutingOptions.parse(coe)
        self._sizes: tuple[int, int] | None = None

    def text_sizes(self) -> tuple[int, int]:
        """Characters and UTF-8 bytes of the messages' text (computed once)."""
        if self._sizes is None:
            texts = [message_text(m) for m in self.messages]
            chars = sum(len(t) for t in texts)
            self._sizes = (chars, sum(len(t.encode("utf-8")) for t in texts) if any(
                not t.isascii() for t in texts) else chars)
        return self._sizes

    @classmethod
    def parse(cls, raw: bytes) -> ChatRequest:
        """The request from its raw body (RequestError when it is not a valid JSON object)."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RequestError(
                f"We could not parse the JSON body of your request ({exc}). The body must be "
                "a JSON object.") from None
        if not isinstance(data, dict):
            raise RequestError("The request body must be a JSON object.")
        return cls(data)

    @classmethod
    def of(cls, **fields: Any) -> ChatRequest:
        """A request from keyword fields (tests, internal callers)."""
        return cls(dict(fields))

    def get(self, name: str, default: Any = None) -> Any:
        return self.body.get(name, default)

    @property
    def unknown_fields(self) -> list[str]:
        return sorted(set(self.body) - KNOWN_REQUEST_FIELDS)

    @property
    def output_budget(self) -> int | None:
        """The caller's cap on generated tokens, if any."""
        value = self.body.get("max_completion_tokens") or self.body.get("max_tokens")
        return int(value) if value else None

    @property
    def tools(self) -> list[Any] | None:
        tools = self.body.get("tools")
        return tools if tools else None

    @property
    def wants_usage(self) -> bool:
        """Whether a streaming caller asked for the final usage chunk."""
        return bool((self.body.get("stream_options") or {}).get("include_usage"))

    @property
    def deterministic(self) -> bool:
        """``temperature == 0`` or a ``seed``: the exact cache may answer it."""
        t = self.body.get("temperature")
        return self.body.get("seed") is not None or (t is not None and float(t) == 0.0)

    def upstream_body(self, upstream_model: str,
                      defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The body sent to an expert: the caller's fields as sent, ``model`` replaced, the
        ``coe`` extension removed, the expert's ``defaults`` where the caller set nothing,
        and usage always asked for when streaming (the gateway bills by it)."""
        body = {k: v for k, v in self.body.items() if k != "coe"}
        body["model"] = upstream_model
        for key, value in (defaults or {}).items():
            body.setdefault(key, value)
        if self.stream:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return body

    def upstream_payload(self, upstream_model: str,
                         defaults: Mapping[str, Any] | None = None) -> bytes:
        return orjson.dumps(self.upstream_body(upstream_model, defaults))

    def has_image(self) -> bool:
        return any(True for _ in self.image_urls())

    def image_urls(self) -> list[str]:
        """The URLs (``data:`` or remote) of every image part, in order."""
        out = []
        for m in self.messages:
            content = m.get("content")
            if isinstance(content, list):
                for p in content:
                    if p.get("type") == "image_url":
                        out.append(str((p.get("image_url") or {}).get("url") or ""))
        return out


def message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if isinstance(p, dict) and p.get("text"))


def routing_text(request: ChatRequest, max_chars: int = 4000) -> str:
    """The text a router sees: the last user turn, preceded by the system prompt, trimmed
    from the front to ``max_chars`` (the most recent words matter most)."""
    system = [message_text(m) for m in request.messages if m["role"] in ("system", "developer")]
    users = [message_text(m) for m in request.messages if m["role"] == "user"]
    last = users[-1] if users else message_text(request.messages[-1])
    text = "\n".join([*system[:1], last]).strip()
    return text[-max_chars:]


def prompt_chars(request: ChatRequest) -> int:
    return request.text_sizes()[0]


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """A tokenizer-free upper-ish estimate: ~4 characters a token plus per-message overhead."""
    return prompt_chars(request) // 4 + 4 * len(request.messages) + 3


def max_prompt_tokens(request: ChatRequest) -> int:
    """An upper bound of the prompt's tokens: a byte-level BPE token is at least one byte,
    plus room for the chat template (per message and a default system prompt)."""
    return request.text_sizes()[1] + 16 * len(request.messages) + 64


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
