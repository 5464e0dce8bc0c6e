"""``coe-gateway eval``: a suite path runs it; replay; errors name the file."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from coe_gateway.cli import build_app

LOG = Path(__file__).parent / "data" / "routing_log.jsonl"


def test_eval_suite_path_runs_the_suite(tiny_suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(build_app(), ["eval", str(tiny_suite), "--out", str(out),
                                           "--no-cache"])
    assert res.exit_code == 0, res.output
    assert "tiny: 4 test queries, 3 models" in res.output
    assert (out / "report.md").exists() and (out / "results.json").exists()
    again = CliRunner().invoke(build_app(), ["eval", "run", str(tiny_suite), "--out",
                                             str(tmp_path / "again"), "--no-cache"])
    assert again.exit_code == 0, again.output
    table = CliRunner().invoke(build_app(), ["eval", "summary", str(tmp_path)])
    assert table.exit_code == 0, table.output
    assert table.output.count("| tiny | 4 | 3 | big:") == 2  # out/ and again/


def test_eval_bench_prints_figures(tiny_suite: Path) -> None:
    res = CliRunner().invoke(build_app(), ["eval", "bench", "--suite", str(tiny_suite),
                                           "--points", "5"])
    assert res.exit_code == 0, res.output
    assert "total_excluding_router_s" in res.output and "│ queries" in res.output


def test_bad_suite_exits_2_naming_file_and_field(tiny_suite: Path) -> None:
    tiny_suite.write_text(tiny_suite.read_text().replace("kind: prior}", "kind: nope}"))
    res = CliRunner().invoke(build_app(), ["eval", str(tiny_suite), "--no-cache"])
    assert res.exit_code == 2
    assert f"{tiny_suite}: routers[0]: unknown router kind 'nope'" in res.output


def test_eval_replay(tmp_path: Path) -> None:
    res = CliRunner().invoke(build_app(), ["eval", "replay", str(LOG), "--out",
                                           str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "5 decisions over 10 s, 1 errors" in res.output
    assert (tmp_path / "replay.json").exists()
