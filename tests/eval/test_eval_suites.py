"""The shipped suites under eval/: they validate, and (slow) each runs to a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coe_gateway.eval.runner import run_suite
from coe_gateway.eval.suite import load_suite

from .conftest import REPO

SUITES = sorted((REPO / "eval").glob("*.yaml"))
DATA_SETS = ("routerbench", "mmlu_pro", "routellm_mmlu", "routellm_gsm8k", "routellm_mt_bench",
             "mathvista", "mathv")


def test_one_suite_per_data_set() -> None:
    assert set(DATA_SETS) <= {load_suite(p).name for p in SUITES}


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_suite_validates_and_names_its_data(path: Path) -> None:
    suite = load_suite(path)
    assert suite.data.attribution.strip(), "every suite states its data's source and licence"
    assert all("shared/data" in p for p in suite.data.paths)
    assert any(r.kind == "prior" for r in suite.routers)


@pytest.mark.slow
@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_suite_runs(path: Path, tmp_path: Path, shared_data: Path) -> None:
    result = run_suite(path, tmp_path, cache_dir=tmp_path / "cache")
    singles = [b for b in result.baselines if b.kind == "single"]
    oracle = next(b for b in result.baselines if b.kind == "oracle")
    assert oracle.accuracy >= max(b.accuracy for b in singles)
    names = [r.name for r in result.suite.routers]
    strategy_curves = sum(len(st.routers or names) for st in result.suite.strategies)
    assert len(result.curves) == len(names) * len(result.suite.policies) + strategy_curves
    for curve in result.curves:
        assert 0.0 <= curve.metrics["aiq"] <= oracle.accuracy
        assert curve.metrics["ps"] <= oracle.accuracy + 1e-12
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["data"]["records"] == written["data"]["train"] + written["data"]["test"]
    assert (tmp_path / "report.md").read_text().startswith(f"# Evaluation: {result.suite.name}")
    assert (tmp_path / "cost_quality.png").stat().st_size > 10_000
