"""bench_check: shape only (no timing asserts)."""

from __future__ import annotations

import pytest

from coe_gateway.answers.bench import SAMPLES, bench_check, time_kind


def test_bench_check_reports_every_kind() -> None:
    result = bench_check(n=20)
    assert set(result) == {f"{k}.{p}_us" for k in SAMPLES for p in ("p50", "p99")}
    for kind in SAMPLES:
        assert 0 < result[f"{kind}.p50_us"] <= result[f"{kind}.p99_us"]


def test_samples_are_read() -> None:
    """The benchmark checks real work: its sample answers all parse."""
    from coe_gateway.answers import build_extractor
    from coe_gateway.answers.bench import PARAMS

    for kind, texts in SAMPLES.items():
        keys = build_extractor(kind, dict(PARAMS.get(kind, {}))).keys(list(texts))
        assert all(k is not None for k in keys), (kind, keys)


def test_time_kind_is_sorted() -> None:
    times = time_kind("choice", 10)
    assert len(times) == 10 and times == sorted(times)


def test_bench_check_needs_n() -> None:
    with pytest.raises(ValueError):
        bench_check(n=0)
