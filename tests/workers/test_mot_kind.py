"""The `mot` worker kind (a fused Mixture-of-Thoughts model): registered, a valid backend,
its command line and environment, where its model directory resolves, its price as the sum
of its parts, and `coe_routing` naming the experts a fused answer came from (on fake
backends)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from coe_gateway.config import ExpertConfig, GatewayConfig, backend_kinds, load_config
from coe_gateway.errors import ConfigError
from coe_gateway.fusion.wire import FUSION_FIELD, extension
from coe_gateway.protocol import ChatRequest
from coe_gateway.sse import Body, Event, dumps, loads
from coe_gateway.testing.fake_backend import FakeBackend, fake_config, fake_gateway
from coe_gateway.workers.backends import ChatResult, HttpBackend
from coe_gateway.workers.kinds import WORKER_KINDS, MotWorker, is_local, local_backend

PARTS = [
    {"name": "small", "backend": "openai", "model": "s", "urls": ["http://127.0.0.1:9/v1"],
     "price": {"input_per_mtok": 0.05, "output_per_mtok": 0.05}},
    {"name": "big", "backend": "openai", "model": "b", "urls": ["http://127.0.0.1:9/v1"],
     "price": {"input_per_mtok": 0.10, "output_per_mtok": 0.20}},
]


def config(**mot: Any) -> GatewayConfig:
    fused = {"name": "fused", "backend": "mot", "model": "/x/fused", **mot}
    return GatewayConfig.model_validate({"experts": [*PARTS, fused], "models_dir": "/models"})


def test_mot_is_a_registered_local_backend() -> None:
    assert isinstance(WORKER_KINDS["mot"], MotWorker)
    assert "mot" in backend_kinds()
    e = ExpertConfig(name="f", backend="mot", model="m")
    assert is_local(e)
    backend = local_backend(e, 0, WORKER_KINDS["mot"].base_url(8200))  # the openai transport
    assert isinstance(backend, HttpBackend) and backend.base_url == "http://127.0.0.1:8200/v1"


def test_argv_launches_the_fused_server() -> None:
    cfg = config(served_name="mot-up", vllm_args=["--max-queue", "4"])
    e = cfg.expert("fused")
    argv = WORKER_KINDS["mot"].argv(cfg, e, 0, 8123)
    assert argv[1:3] == ["-m", "coe_gateway.fusion.server"]
    flags = dict(zip(argv[3::2], argv[4::2]))
    assert flags == {"--model": "/x/fused", "--served-model-name": "mot-up",
                     "--host": "127.0.0.1", "--port": "8123", "--models-dir": "/models",
                     "--max-queue": "4"}


def test_cpu_threads_pin_the_replica_and_size_torch() -> None:
    cfg = config(replicas=2, cpu_threads=["0-2", "3"], env={"X": "1"})
    e = cfg.expert("fused")
    kind = WORKER_KINDS["mot"]
    assert kind.argv(cfg, e, 1, 8000)[-2:] == ["--cpus", "3"]
    env = kind.env(e, 0)
    assert env["OMP_NUM_THREADS"] == "3" and env["X"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert kind.env(e, 1)["OMP_NUM_THREADS"] == "1"
    assert "--cpus" not in kind.argv(config(), config().expert("fused"), 0, 8000)


def _write_config(tmp_path: Path, model: str) -> Path:
    data = {"experts": [*PARTS, {"name": "fused", "backend": "mot", "model": model}],
            "models_dir": str(tmp_path / "models")}
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_relative_model_resolves_beside_the_config_then_under_models_dir(
        tmp_path: Path) -> None:
    (tmp_path / "experts" / "mine").mkdir(parents=True)
    cfg = load_config(_write_config(tmp_path, "experts/mine"))
    assert cfg.model_path(cfg.expert("fused")) == str(tmp_path / "experts" / "mine")
    cfg = load_config(_write_config(tmp_path, "experts/elsewhere"))
    assert cfg.model_path(cfg.expert("fused")) == str(tmp_path / "models" / "experts"
                                                      / "elsewhere")


def test_price_is_the_sum_of_its_parts_unless_set() -> None:
    derived = config(fused_from=["small", "big"]).expert("fused").price
    assert derived.input_per_mtok == pytest.approx(0.15)
    assert derived.output_per_mtok == pytest.approx(0.25)
    explicit = config(fused_from=["small", "big"], price={"input_per_mtok": 1.0})
    assert explicit.expert("fused").price.input_per_mtok == 1.0
    assert explicit.expert("fused").price.output_per_mtok == 0.0
    assert config().expert("fused").price.input_per_mtok == 0.0  # not fused from anything


def test_a_fused_part_may_itself_be_fused() -> None:
    cfg = GatewayConfig.model_validate({"experts": [
        *PARTS, {"name": "pair", "backend": "mot", "model": "p", "fused_from": ["small", "big"]},
        {"name": "trio", "backend": "mot", "model": "t", "fused_from": ["pair", "small"]}]})
    assert cfg.expert("trio").price.output_per_mtok == pytest.approx(0.30)


@pytest.mark.parametrize("names", [["small", "nope"], ["fused"]])
def test_unknown_fused_from_name_is_an_error_naming_the_field(names: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        config(fused_from=names)
    msg = info.value.errors()[0]["msg"]
    assert "experts[2].fused_from" in msg and repr(names[-1]) in msg and "small, big" in msg


def test_unknown_fused_from_name_in_a_file_is_a_config_error(tmp_path: Path) -> None:
    path = _write_config(tmp_path, "m")
    data = yaml.safe_load(path.read_text())
    data["experts"][2]["fused_from"] = ["smal"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == "experts" and "fused_from" in info.value.reason
    assert "'smal'" in info.value.reason


class FakeFusedBackend(FakeBackend):
    """A fake upstream answering like the fused server: ``coe_fusion`` in the body or the
    first event."""

    EXT = extension("small", ["small", "big"], 7)

    async def chat(self, payload: bytes, *, stream: bool) -> ChatResult:
        result = await super().chat(payload, stream=stream)
        if isinstance(result, Body):
            return Body(dumps({**loads(result.raw), FUSION_FIELD: self.EXT}))
        return self._tagged(result)

    async def _tagged(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        first = True
        async for ev in events:
            yield Event.of({**ev.json(), FUSION_FIELD: self.EXT}) if first else ev
            first = False


def _fused_gateway() -> Any:
    data = fake_config(["small", "big", "fused"]).model_dump()
    data["experts"][2].update(backend="mot", urls=[], fused_from=["small", "big"])
    del data["experts"][2]["price"]
    cfg = GatewayConfig.model_validate(data)
    return fake_gateway({"small": FakeBackend(), "big": FakeBackend(),
                         "fused": FakeFusedBackend()}, cfg)


def _ask(**kw: Any) -> ChatRequest:
    return ChatRequest({"model": "fused", "messages": [{"role": "user", "content": "hi"}], **kw})


async def test_coe_routing_names_the_experts_of_a_fused_answer_fake_backend() -> None:
    gw = _fused_gateway()
    reply = await gw.chat(_ask())
    body = json.loads(reply.body or b"")
    (attempt,) = body["coe_routing"]["attempts"]
    assert attempt["expert"] == "fused"
    assert attempt["fused"] == {"primary": "small", "active": ["small", "big"]}
    price = gw.cfg.expert("fused").price  # the sum of its parts: (1 + 2, 2 + 3) per Mtok
    assert (price.input_per_mtok, price.output_per_mtok) == (3.0, 5.0)
    assert attempt["cost_usd"] == pytest.approx(price.cost(attempt["prompt_tokens"],
                                                           attempt["completion_tokens"]))


async def test_coe_routing_of_a_streamed_fused_answer_fake_backend() -> None:
    reply = await _fused_gateway().chat(_ask(stream=True))
    assert reply.stream is not None
    chunks = [c async for c in reply.stream]
    first = json.loads(chunks[0][6:])
    assert first["coe_routing"]["attempts"][0]["fused"] == {"primary": "small",
                                                            "active": ["small", "big"]}


async def test_other_experts_attempts_are_not_parsed_for_fusion_fake_backend() -> None:
    gw = fake_gateway({"small": FakeFusedBackend(), "big": FakeBackend()})
    reply = await gw.chat(ChatRequest({"model": "small", "messages": [
        {"role": "user", "content": "hi"}]}))
    (attempt,) = json.loads(reply.body or b"")["coe_routing"]["attempts"]
    assert "fused" not in attempt


def test_shipped_mot_config_fuses_the_embedded_experts() -> None:
    root = Path(__file__).resolve().parents[2]
    embedded = load_config(root / "configs" / "embedded.yaml")
    cfg = load_config(root / "configs" / "mot.yaml")
    fused = cfg.expert("mot-arc-easy")
    assert fused.backend == "mot" and fused.fused_from == embedded.expert_names
    assert [cfg.expert(n) for n in embedded.expert_names] == embedded.experts
    parts = [e.price for e in embedded.experts]
    assert fused.price.input_per_mtok == pytest.approx(sum(p.input_per_mtok for p in parts))
    assert fused.price.output_per_mtok == pytest.approx(sum(p.output_per_mtok for p in parts))
