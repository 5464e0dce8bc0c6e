"""Protocol models: validation, unknown fields kept, upstream body, routing text."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from coe_gateway.protocol import ChatCompletionRequest, estimate_prompt_tokens, routing_text


def req(**kw: object) -> ChatCompletionRequest:
    base: dict[str, object] = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    return ChatCompletionRequest.model_validate({**base, **kw})


def test_unknown_fields_are_kept_and_sent_upstream() -> None:
    r = req(my_vendor_flag=True, top_k=5, temperature=0.2)
    assert r.unknown_fields == ["my_vendor_flag", "top_k"]
    body = r.upstream_body("upstream-name")
    assert body["model"] == "upstream-name"
    assert body["my_vendor_flag"] is True and body["top_k"] == 5
    assert body["temperature"] == 0.2
    assert "stream" not in body  # only what the caller set travels


def test_coe_extension_never_goes_upstream() -> None:
    r = req(coe={"policy": "quality-first", "category": "math"})
    assert r.coe is not None and r.coe.category == "math"
    assert "coe" not in r.upstream_body("x")


@pytest.mark.parametrize(
    "bad",
    [
        {"messages": []},
        {"messages": [{"role": "wizard", "content": "x"}]},
        {"temperature": "hot"},
        {"temperature": 3},
        {"max_tokens": 0},
        {"model": " "},
        {"stream": "sometimes"},
    ],
)
def test_invalid_requests_raise(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        req(**bad)


def test_content_parts_and_images() -> None:
    r = req(messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]}])
    assert r.has_image()
    assert routing_text(r) == "what is this"


def test_routing_text_uses_system_and_last_user_turn() -> None:
    r = req(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second question"},
    ])
    assert routing_text(r) == "Be brief.\nsecond question"
    assert estimate_prompt_tokens(r) > 4
