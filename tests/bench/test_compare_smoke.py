"""``coe-gateway bench compare`` in miniature: the load generator's parser, the fast upstream,
and a run of a few seconds (direct + gateway; LiteLLM only when its venv is there).

Structure and success only: no timing is asserted (the figures are benchmarks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from coe_gateway.bench import compare, fast_upstream, http1, loadgen
from coe_gateway.bench.litellm_env import DEFAULT_VENV, LiteLLMEnv
from coe_gateway.cli import build_app

SSE_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in (
        b'data: {"a":1}\n\ndata: {"b":2}\n\n', b'data: {"c":3}\n\n', b"data: [DONE]\n\n"))
    + b"0\r\n\r\n")
TABLES = ("1. Sequential latency", "2. Throughput", "3. Streaming", "4. Open-loop sweep",
          "5. Server process")


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, len(SSE_RESPONSE)])
def test_parser_reads_a_chunked_stream_split_anywhere(step: int) -> None:
    exchange = loadgen.Exchange(0.0, stream=True)
    parser = loadgen.ResponseParser(exchange)
    pieces = [SSE_RESPONSE[i:i + step] for i in range(0, len(SSE_RESPONSE), step)]
    done = [parser.feed(p, float(i)) for i, p in enumerate(pieces)]
    assert done[-1] and not any(done[:-1])
    assert exchange.status == 200 and exchange.events == 4 and exchange.saw_done


def test_parser_reads_a_content_length_body() -> None:
    exchange = loadgen.Exchange(0.0, keep_body=True)
    parser = loadgen.ResponseParser(exchange)
    assert not parser.feed(b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nab", 1.0)
    assert parser.feed(b"cd", 2.0)
    assert exchange.status == 404 and exchange.body_bytes == b"abcd" and not exchange.ok


def test_body_framing_reads_length_chunked_and_connection() -> None:
    assert http1.body_framing([b"Content-Length: 12", b"x-other: 1"]) == (12, False, None)
    assert http1.body_framing([b"transfer-encoding: Chunked", b"connection: close"]) == (
        -1, True, False)
    assert http1.body_framing([b"Connection: keep-alive"]) == (-1, False, True)
    assert http1.chunk_size(b"1a;ext=1") == 26


def test_fast_upstream_reads_a_chunked_request() -> None:
    body = b'{"model":"x"}'
    raw = (b"POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
           + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) + b"GET /health HTTP/1.0\r\n\r\n")
    request, used = fast_upstream.parse_request(bytearray(raw))
    assert request is not None and request.body == body and request.keep_alive
    rest, _ = fast_upstream.parse_request(bytearray(raw[used:]))
    assert rest is not None and rest.path == b"/health" and not rest.keep_alive
    assert fast_upstream.parse_request(bytearray(raw[:used - 2])) == (None, 0)


def test_fast_upstream_answers_the_load_generator(tmp_path: Path) -> None:
    cores = sorted(os.sched_getaffinity(0))
    with compare.upstream(cores, 0.002, tmp_path / "up.log") as (port, _pid):
        target = compare.Target("direct", "direct", port, "x", _pid)

        async def go() -> tuple[loadgen.LoadResult, loadgen.LoadResult, loadgen.LoadResult]:
            await compare.sanity_check(target)
            plain = compare.chat_source(target, stream=False, max_tokens=4)
            streamed = compare.chat_source(target, stream=True, max_tokens=5)
            return (await loadgen.closed_loop("127.0.0.1", port, plain, 4, 0.3),
                    await loadgen.open_loop("127.0.0.1", port, plain, 200, 0.3),
                    await loadgen.stream_burst("127.0.0.1", port, streamed, 6))

        closed, opened, streams = compare.run_async(go())
    assert closed.ok and closed.errors == 0
    assert len(opened.ok) == opened.scheduled == 60
    assert len(streams.ok) == 6 and all(e.saw_done for e in streams.ok)
    # role + first word, 4 more words, then finish + usage + [DONE] together
    assert {e.events for e in streams.ok} == {1 + 1 + 4 + 3}


def _run_cli(tmp_path: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "figures.json"
    result = CliRunner().invoke(build_app(), [
        "bench", "compare", "--seconds", "0.5", "--rates", "50,100", "--streams", "8",
        "--chunks", "8", "--chunk-interval-ms", "5", "--warmup", "0.2", "--json", str(out),
        *extra])
    assert result.exit_code == 0, result.output
    return result.output, json.loads(out.read_text())


def _check_target(figures: dict[str, Any], streams: int = 8) -> None:
    assert figures["error"] is None, figures["error"]
    seq, thr, st = figures["sequential"], figures["throughput"], figures["streaming"]
    assert seq["requests"] > 0 and seq["errors"] == 0
    assert thr["requests"] > 0 and thr["errors"] == 0 and thr["rps"] > 0
    assert st["completed"] == st["ok"] == streams
    one = figures["sequential_streaming"]  # one stream at a time, back to back
    assert one["streams"] >= 1 and one["completed"] == one["ok"] == one["streams"]
    assert one["ttft_p50_ms"] > 0 and one["ttft_p99_ms"] >= one["ttft_p50_ms"]
    assert [r["rate"] for r in figures["sweep"]] == [50.0, 100.0]
    for rate in figures["sweep"]:
        assert rate["skipped"] is None and rate["errors"] == 0 and rate["ok"] == rate["scheduled"]
    assert figures["rss_mb"] > 0


def test_compare_runs_direct_and_gateway(tmp_path: Path) -> None:
    output, figures = _run_cli(tmp_path, "--skip-litellm")
    for title in TABLES:
        assert title in output
    assert set(figures) == {"settings", "meta", "targets", "added", "ratios"}
    targets = {t["key"]: t for t in figures["targets"]}
    assert list(targets) == ["direct", "gateway"]
    for t in targets.values():
        _check_target(t)
    added = figures["added"]["gateway"]
    assert {"sequential_p50_ms", "sequential_p99_ms", "ttft_p99_ms", "per_chunk_ms",
            "per_chunk_us", "sequential_ttft_p50_ms", "sequential_ttft_p99_ms",
            "sequential_per_chunk_us"} <= set(added)
    for row in ("TTFT p99 ms, one stream at a time", "TTFT p99 ms, 8 at once",
                "added per-chunk us"):
        assert row in output
    assert set(added["sweep"]) == {"50", "100"}
    assert figures["ratios"] == {}  # nothing to compare with


@pytest.mark.slow  # starts the LiteLLM proxy (10-30 s to boot on one core)
def test_compare_with_litellm(tmp_path: Path) -> None:
    env = LiteLLMEnv(Path(os.environ.get("COE_BENCH_LITELLM_VENV", DEFAULT_VENV)))
    if not env.installed():
        pytest.skip(f"no LiteLLM venv at {env.venv} (coe-gateway bench compare --setup-litellm)")
    output, figures = _run_cli(tmp_path, "--litellm-venv", str(env.venv))
    targets = {t["key"]: t for t in figures["targets"]}
    assert list(targets) == ["direct", "gateway", "litellm"]
    _check_target(targets["litellm"])
    assert {"throughput_gateway_over_litellm", "added_sequential_ttft_p99_litellm_over_gateway",
            "added_ttft_p99_litellm_over_gateway"} <= set(figures["ratios"])
    assert figures["meta"]["litellm_version"] not in (None, "?")
    assert "Ratios" in output
