"""The extractor registry: built-in kinds, building, errors."""

from __future__ import annotations

from typing import Any

import pytest

from coe_gateway.answers import EXTRACTORS, Extractor, build_extractor, register_extractor
from coe_gateway.errors import RequestError

BUILTIN = {"choice", "number", "code", "exact", "json", "embedding"}


def test_builtin_kinds_are_registered() -> None:
    assert BUILTIN <= set(EXTRACTORS)
    for kind in BUILTIN:
        assert EXTRACTORS[kind].kind == kind


def test_build_returns_the_kind() -> None:
    for kind in BUILTIN - {"embedding"}:
        extractor = build_extractor(kind)
        assert extractor.kind == kind
        assert extractor.describe()["kind"] == kind


def test_build_passes_params() -> None:
    extractor = build_extractor("choice", {"letters": "ABCD"})
    assert extractor.describe() == {"kind": "choice", "letters": "ABCD"}
    assert extractor.extract("E") is None
    assert extractor.extract("D") == "D"


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(RequestError) as info:
        build_extractor("regex")
    err = info.value
    assert err.param == "coe.answer"
    assert err.status_code == 400
    assert "regex" in err.message
    for kind in BUILTIN:
        assert kind in err.message


@pytest.mark.parametrize("kind, params", [
    ("choice", {"nope": 1}),
    ("choice", {"letters": "abc"}),
    ("choice", {"letters": "A1"}),
    ("exact", {"case_sensitive": "yes"}),
    ("json", {"field": "a..b"}),
    ("json", {"field": 3}),
    ("number", {"precision": 2}),
    ("code", {"lang": "python"}),
    ("embedding", {"threshold": 2.0}),
    ("embedding", {"threshold": "high"}),
    ("embedding", {"encoder": {"kind": "tfidf"}}),
    ("embedding", {"encoder": {"colour": "red"}}),
])
def test_bad_params_are_a_request_error(kind: str, params: dict[str, Any]) -> None:
    with pytest.raises(RequestError) as info:
        build_extractor(kind, params)
    assert info.value.param == "coe.answer"
    assert kind in info.value.message


def test_default_keys_maps_none_to_none() -> None:
    extractor = build_extractor("exact")
    assert extractor.keys(["Paris", None, "", "paris."]) == ["paris", None, None, "paris"]


def test_register_a_new_kind() -> None:
    @register_extractor("test-upper")
    class Upper(Extractor):
        def extract(self, text: str) -> str | None:
            return text.upper() or None

    try:
        assert EXTRACTORS["test-upper"] is Upper
        assert Upper.kind == "test-upper"
        assert build_extractor("test-upper").keys(["a", "", None]) == ["A", None, None]
    finally:
        del EXTRACTORS["test-upper"]
