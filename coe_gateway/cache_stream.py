"""Replaying a cached answer as a stream, and the reverse: a whole chat completion cut into
the chunks a stream of it carries (:func:`response_to_chunks`), the stored chunks chosen for a
replay (:func:`select_chunks`), and a stream assembled back into one completion
(:func:`assemble_stream`) for the cache to store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_STANDARD = frozenset({"id", "object", "created", "model", "choices", "usage",
                       "system_fingerprint", "service_tier"})


def _usage_only(chunk: Mapping[str, Any]) -> bool:
    return not chunk.get("choices") and chunk.get("usage") is not None


def response_to_chunks(response: Mapping[str, Any], include_usage: bool = False
                       ) -> list[dict[str, Any]]:
    """A whole chat completion as the chunks a stream of it would carry: per choice a role
    chunk, a content (and tool calls) chunk and a finish chunk; then the usage chunk when
    asked. Extension fields of the response ride on the first chunk."""
    base = {k: response.get(k) for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    if response.get("system_fingerprint") is not None:
        base["system_fingerprint"] = response["system_fingerprint"]

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}]}

    out: list[dict[str, Any]] = []
    for choice in response.get("choices") or []:
        i, msg = choice.get("index", 0), choice.get("message") or {}
        out.append(chunk(i, {"role": msg.get("role", "assistant"), "content": ""}))
        delta: dict[str, Any] = {}
        if msg.get("content"):
            delta["content"] = msg["content"]
        if msg.get("tool_calls"):
            delta["tool_calls"] = [{"index": j, **tc} for j, tc in enumerate(msg["tool_calls"])]
        if delta:
            out.append(chunk(i, delta))
        out.append(chunk(i, {}, choice.get("finish_reason")))
    if out:
        out[0].update({k: v for k, v in response.items() if k not in _STANDARD})
    if include_usage and response.get("usage") is not None:
        out.append({**base, "choices": [], "usage": response["usage"]})
    return out


def select_chunks(chunks: Sequence[Mapping[str, Any]], response: Mapping[str, Any],
                  include_usage: bool) -> list[dict[str, Any]]:
    """Stored chunks for a replay: the usage chunk kept or made only when asked for."""
    body = [dict(c) for c in chunks if not _usage_only(c)]
    if include_usage:
        usage = [dict(c) for c in chunks if _usage_only(c)]
        if not usage and response.get("usage") is not None and body:
            base = {k: body[-1].get(k) for k in ("id", "object", "created", "model")}
            usage = [{**base, "choices": [], "usage": response["usage"]}]
        body += usage
    return body


def assemble_stream(chunks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The chat completion a stream of chunks amounts to (content and tool-call arguments
    concatenated, finish reasons and usage kept, extension fields carried over)."""
    if not chunks:
        raise ValueError("no chunks to assemble")
    first = chunks[0]
    out: dict[str, Any] = {"id": first.get("id"), "object": "chat.completion",
                           "created": first.get("created"), "model": first.get("model")}
    choices: dict[int, dict[str, Any]] = {}
    for c in chunks:
        out.update({k: v for k, v in c.items() if k not in _STANDARD and k not in out})
        if c.get("usage") is not None:
            out["usage"] = c["usage"]
        for ch in c.get("choices") or []:
            _merge_delta(choices, ch)
    out["choices"] = [choices[i] for i in sorted(choices)]
    return out


def _merge_delta(choices: dict[int, dict[str, Any]], ch: Mapping[str, Any]) -> None:
    i = ch.get("index", 0)
    state = choices.setdefault(i, {"index": i, "message": {"role": "assistant", "content": None},
                                   "logprobs": None, "finish_reason": None})
    msg, delta = state["message"], ch.get("delta") or {}
    if delta.get("role"):
        msg["role"] = delta["role"]
    if delta.get("content"):
        msg["content"] = (msg["content"] or "") + delta["content"]
    for tc in delta.get("tool_calls") or []:
        calls = msg.setdefault("tool_calls", [])
        j = tc.get("index", len(calls))
        while len(calls) <= j:
            calls.append({"id": None, "type": "function",
                          "function": {"name": None, "arguments": ""}})
        call, fn = calls[j], tc.get("function") or {}
        call["id"] = tc.get("id") or call["id"]
        call["function"]["name"] = fn.get("name") or call["function"]["name"]
        call["function"]["arguments"] += fn.get("arguments") or ""
    if ch.get("finish_reason"):
        state["finish_reason"] = ch["finish_reason"]
