"""The worker-kind registry: `vllm` is built in, a registered kind becomes a valid
`experts[].backend` that is launched locally, an unknown one is a config error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from coe_gateway.config import ExpertConfig, GatewayConfig
from coe_gateway.workers.backends import HttpBackend
from coe_gateway.workers.kinds import (
    WORKER_KINDS,
    WorkerKind,
    is_local,
    local_backend,
    local_experts,
    register_worker_kind,
    worker_kind,
)


class EchoKind(WorkerKind):
    """A test-only kind (never launched here)."""

    def argv(self, cfg: GatewayConfig, expert: ExpertConfig, index: int, port: int) -> list[str]:
        return ["echo", expert.name, str(index), str(port)]


@pytest.fixture
def echo_kind() -> Iterator[str]:
    register_worker_kind("echo-test")(EchoKind)
    yield "echo-test"
    WORKER_KINDS.pop("echo-test")


def test_vllm_is_a_worker_kind_and_remote_kinds_are_not() -> None:
    cfg = GatewayConfig.model_validate({"experts": [
        {"name": "v", "backend": "vllm", "model": "m"},
        {"name": "o", "backend": "openai", "model": "m", "urls": ["http://127.0.0.1:9/v1"]},
        {"name": "l", "backend": "litellm", "model": "x/y"}]})
    assert [e.name for e in local_experts(cfg)] == ["v"]
    assert worker_kind(cfg.experts[0]) is WORKER_KINDS["vllm"]
    with pytest.raises(ValueError, match="not a worker kind"):
        worker_kind(cfg.experts[1])


def test_a_registered_kind_is_a_valid_local_backend(echo_kind: str) -> None:
    e = ExpertConfig(name="x", backend=echo_kind, model="m", env={"A": "1"})
    assert is_local(e)
    kind = worker_kind(e)
    cfg = GatewayConfig(experts=[e])
    assert kind.argv(cfg, e, 1, 8200) == ["echo", "x", "1", "8200"]
    assert kind.env(e, 0)["A"] == "1" and kind.env(e, 0)["HF_HUB_OFFLINE"] == "1"
    backend = local_backend(e, 0, kind.base_url(8200))  # no backend of that name: openai's
    assert isinstance(backend, HttpBackend) and backend.base_url == "http://127.0.0.1:8200/v1"


def test_unknown_backend_is_an_error_listing_the_kinds(echo_kind: str) -> None:
    with pytest.raises(ValidationError) as info:
        ExpertConfig(name="x", backend="tgi", model="m")
    err = info.value.errors()[0]
    assert err["loc"] == ("backend",)
    assert "'tgi'" in err["msg"] and "'echo-test'" in err["msg"] and "'vllm'" in err["msg"]
