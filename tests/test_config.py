"""Config validation: an invalid file names the file, the field and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from coe_gateway.config import GatewayConfig, load_config, resolve_option_paths
from coe_gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """
experts:
  - name: a
    backend: openai
    model: m
    urls: ["http://127.0.0.1:9/v1"]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gw.yaml"
    p.write_text(text)
    return p


def test_embedded_config_loads() -> None:
    cfg = load_config(ROOT / "configs" / "embedded.yaml")
    assert cfg.expert_names == ["smollm2-135m-instruct", "gemma-3-270m"]
    assert all(e.backend == "vllm" for e in cfg.experts)
    assert cfg.redis_url is None
    assert cfg.routing.default_router in [r.name for r in cfg.routing.routers]


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.routing.default_router == "prior"
    assert cfg.experts[0].capabilities == ["text"]


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("experts: []\n", "experts", "at least 1"),
        (MINIMAL.replace("backend: openai", "backend: tgi"), "experts[0].backend", "'vllm'"),
        (MINIMAL.replace('    urls: ["http://127.0.0.1:9/v1"]\n', ""), "experts[0]", "urls"),
        (MINIMAL + "server: {port: 99999}\n", "server.port", "less than or equal"),
        (MINIMAL + "routing: {default_router: nope}\n", "routing", "nope"),
        (MINIMAL + "sever: {}\n", "sever", "Extra inputs"),
        (MINIMAL.replace("name: a", "name: 'bad name'"), "experts[0].name", "pattern"),
        (MINIMAL + "  - {name: a, backend: litellm, model: x}\n", "experts", "repeated"),
    ],
)
def test_invalid_config_names_file_field_reason(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.path == str(path)
    assert err.field == field
    assert reason in err.reason
    assert str(path) in str(err) and field in str(err)


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "experts: [\n  - {name: a\n"))
    assert info.value.field.startswith("line ")


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    text = MINIMAL + "budget_file: budgets.yaml\nrouting:\n  routing_log: logs/r.jsonl\n"
    cfg = load_config(write(tmp_path, text))
    assert cfg.budget_file == str(tmp_path / "budgets.yaml")
    assert cfg.routing.routing_log == str(tmp_path / "logs" / "r.jsonl")


def test_gpu_placement_must_match_replicas() -> None:
    with pytest.raises(ValueError, match="gpus"):
        GatewayConfig.model_validate({"experts": [
            {"name": "a", "backend": "vllm", "model": "m", "replicas": 2, "gpus": [[0]]}]})


def test_router_path_must_hold_a_saved_router(tmp_path: Path) -> None:
    text = MINIMAL + ("routing:\n  default_router: r\n  routers:\n"
                      "    - {name: r, kind: coe, path: nowhere}\n")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.field == "routing.routers[0].path"
    assert "router.json" in info.value.reason


def test_router_option_paths_resolve_against_the_file(tmp_path: Path) -> None:
    options = {"label_files": ["labels/a.jsonl", "/abs/b.jsonl"], "models_json": "m.json",
               "encoder": {"kind": "static", "path": "enc", "dim": 64}, "k": 8}
    got = resolve_option_paths(options, tmp_path)
    assert got == {"label_files": [str(tmp_path / "labels" / "a.jsonl"), "/abs/b.jsonl"],
                   "models_json": str(tmp_path / "m.json"),
                   "encoder": {"kind": "static", "path": str(tmp_path / "enc"), "dim": 64},
                   "k": 8}
    assert options["label_files"][0] == "labels/a.jsonl"  # the input is left as it was


def test_gateway_router_options_resolve_against_the_file(tmp_path: Path) -> None:
    text = MINIMAL + ("routing:\n  default_router: p\n  routers:\n"
                      "    - {name: p, kind: prior, options: {models_json: facts/m.json}}\n")
    cfg = load_config(write(tmp_path, text))
    assert cfg.routing.routers[0].options["models_json"] == str(tmp_path / "facts" / "m.json")
