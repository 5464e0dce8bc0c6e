"""The request view: validation (a 400 naming the field), unknown fields kept, upstream body,
routing text."""

from __future__ import annotations

import pytest
from coe_gateway.errors import RequestError
from coe_gateway.protocol import ChatRequest, estimate_prompt_tokens, routing_text


def req(**kw: object) -> ChatRequest:
    base: dict[str, object] = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    return ChatRequest({**base, **kw})


def test_unknown_fields_are_kept_and_sent_upstream() -> None:
    r = req(my_vendor_flag=True, top_k=5, temperature=0.2)
    assert r.unknown_fields == ["my_vendor_flag", "top_k"]
    body = r.upstream_body("upstream-name")
    assert body["model"] == "upstream-name"
    assert body["my_vendor_flag"] is True and body["top_k"] == 5
    assert body["temperature"] == 0.2
    assert "stream" not in body  # only what the caller set travels
    streamed = req(stream=True).upstream_body("x", {"stop": ["\n"]})
    assert streamed["stream_options"] == {"include_usage": True}  # the gateway bills by it
    assert streamed["stop"] == ["\n"]
    assert req(stop="END").upstream_body("x", {"stop": ["\n"]})["stop"] == "END"


def test_coe_extension_never_goes_upstream() -> None:
    r = req(coe={"policy": "quality-first", "category": "math"})
    assert r.coe is not None and r.coe.category == "math"
    assert "coe" not in r.upstream_body("x")


@pytest.mark.parametrize(
    ("bad", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
         "messages[0].content[0].text"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 1.5}, "n"),
        ({"model": " "}, "model"),
        ({"stream": "sometimes"}, "stream"),
        ({"stop": [1]}, "stop"),
        ({"coe": {"polcy": "x"}}, "coe.polcy"),
    ],
)
def test_invalid_requests_raise(bad: dict[str, object], param: str) -> None:
    with pytest.raises(RequestError) as info:
        req(**bad)
    assert info.value.status_code == 400 and info.value.param == param


def test_parse_rejects_non_objects() -> None:
    for raw in (b"{not json", b"[1, 2]", b'"x"'):
        with pytest.raises(RequestError):
            ChatRequest.parse(raw)
    assert ChatRequest.parse(b'{"model": "m", "messages": [{"role": "user"}]}').model == "m"


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
