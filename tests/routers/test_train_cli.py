from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from coe_gateway.cli import build_app
from coe_gateway.routers.registry import load_router
from coe_gateway.routers.training import parse_options


def test_parse_options_yaml_values_and_nesting() -> None:
    got = parse_options(["k=8", "encoder.kind=static", "label_files=[a.jsonl]"], {"k": 1})
    assert got == {"k": 8, "encoder": {"kind": "static"}, "label_files": ["a.jsonl"]}
    with pytest.raises(ValueError, match="key=value"):
        parse_options(["k"])


def test_train_router_command_saves_a_loadable_router(mmlu_slice_path, static_dir,
                                                      tmp_path) -> None:
    out = tmp_path / "knn"
    result = CliRunner().invoke(build_app(), [
        "train", "router", "knn", str(mmlu_slice_path), "--out", str(out),
        "-o", "encoder.kind=static", "-o", f"encoder.path={static_dir}", "-o", "k=5"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "router.json").read_text())
    assert meta["kind"] == "knn" and meta["config"]["k"] == 5
    router = load_router(out)
    assert len(router.embeddings) == 168  # the 70% train split of 240 records


def test_train_router_command_reports_bad_options(mmlu_slice_path, tmp_path) -> None:
    result = CliRunner().invoke(build_app(), [
        "train", "router", "knn", str(mmlu_slice_path), "--out", str(tmp_path / "x"),
        "-o", "encoder.kind=word2vec"])
    assert result.exit_code == 2
    assert "encoder.kind" in result.output


def test_profile_commands(mmlu_slice_path, static_dir, tmp_path) -> None:
    app, runner = build_app(), CliRunner()
    router = tmp_path / "profile"
    enc = ["-o", "encoder.kind=static", "-o", f"encoder.path={static_dir}"]
    r = runner.invoke(app, ["train", "router", "profile", str(mmlu_slice_path), "--out",
                            str(router), "--experts", "gemini-1.5-pro-002,Llama-2-7b-hf",
                            "-o", "clusters=3", *enc])
    assert r.exit_code == 0, r.output
    prof = tmp_path / "flash.json"
    r = runner.invoke(app, ["profile", "build", "--router", str(router), str(mmlu_slice_path),
                            "--model", "gemini-1.5-flash-002", "--fraction", "0.5",
                            "--out", str(prof)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["profile", "add", "--router", str(router), str(prof)])
    assert r.exit_code == 0, r.output
    assert load_router(router).experts[-1] == "gemini-1.5-flash-002"
    r = runner.invoke(app, ["profile", "show", str(prof)])
    assert r.exit_code == 0 and "gemini-1.5-flash-002" in r.output


def test_option_file_paths_resolve_against_the_file_not_the_cwd(
        mmlu_slice_path, static_dir, tmp_path, monkeypatch) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "labels.jsonl").write_text(
        json.dumps({"prompt": "Write a sonnet about the sea.", "category": "creative"}) + "\n"
        + json.dumps({"prompt": "Compose a limerick on cats.", "category": "creative"}) + "\n")
    (conf / "opts.yaml").write_text(
        f"encoder: {{kind: static, path: {static_dir}}}\nlabel_files: [labels.jsonl]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "coe"
    result = CliRunner().invoke(build_app(), [
        "train", "router", "coe", str(mmlu_slice_path), "--out", str(out),
        "--options", str(conf / "opts.yaml")])
    assert result.exit_code == 0, result.output
    router = load_router(out)
    assert "creative" in router.labels  # the labelled file was found beside opts.yaml
