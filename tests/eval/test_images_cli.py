"""``coe-gateway eval images --quick`` end to end on real MATH-V records and the shipped
image-feature stores (skipped where either is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coe_gateway.cli import build_app

REPO = Path(__file__).resolve().parents[2]
STORE = REPO / "data" / "image-features" / "mathv"
MATHV = REPO.parent / "shared" / "data" / "mathv" / "records.jsonl.gz"


def _stores_ready() -> bool:
    return MATHV.exists() and all(any(STORE.glob(f"{k}-*.safetensors"))
                                  for k in ("pixels", "ocr", "stats"))


@pytest.mark.slow
@pytest.mark.skipif(not _stores_ready(), reason="no shared mathv data or feature stores")
def test_quick_run_writes_report_and_resumes(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["eval", "images", "--quick", "--suite", str(REPO / "eval" / "mathv.yaml"),
            "--out", str(out), "--cache", str(cache)]
    res = CliRunner().invoke(build_app(), args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    curves = [r for r in rows if r["type"] == "curve"]
    assert {(r["router"], r["variant"]) for r in curves} == {
        ("reference", "single"), ("reference", "subject-prior"),
        ("image-knn", "T"), ("image-knn", "T+all-concat"),
        ("image-linearmf", "T"), ("image-linearmf", "T+all-concat")}
    assert sum(r["type"] == "bootstrap" for r in rows) == 2
    summary = json.loads((out / "summary.json").read_text())
    first = summary["results"][0]
    assert set(first) >= {"router", "metrics", "single_model", "pareto"}
    assert set(first["metrics"]) == {"nAUC", "Ps", "QNC"}
    report = (out / "report.md").read_text()
    assert "Pre-registered primary comparison" in report and "frontiers_mmr.png" in report
    assert (out / "frontiers_mmr.png").stat().st_size > 0
    # a rerun skips every row already there
    again = CliRunner().invoke(build_app(), args)
    assert again.exit_code == 0, again.output
    rerun = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "curve" for r in rerun) == len(curves)
