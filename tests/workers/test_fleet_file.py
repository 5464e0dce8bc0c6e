"""The fleet file: a written fleet reads back equal, writes are atomic, and every kind of
invalid file is a FleetFileError naming the field."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coe_gateway.config import GatewayConfig, default_fleet_file, load_config
from coe_gateway.workers.fleet_file import (
    FleetFileError,
    FleetState,
    PublishedReplica,
    Publisher,
    file_version,
    fleet_path,
    parse_fleet,
    read_fleet_file,
    write_fleet_file,
)


def state(heartbeat: float | None = None, pid: int | None = None) -> FleetState:
    now = time.time() if heartbeat is None else heartbeat
    return FleetState(
        publisher=Publisher(pid=pid or os.getpid(), host=socket.gethostname(),
                            started_at=now - 5, heartbeat=now),
        ready=True,
        experts={"e": [PublishedReplica(replica=0, url="http://127.0.0.1:9/v1", pid=123,
                                        state="ready", healthy=True, restarts=2,
                                        updated_at=now - 1)]},
    )


def test_round_trip_is_atomic_and_changes_the_version(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "fleet.json"
    assert file_version(path) is None
    s = state()
    write_fleet_file(path, s)
    assert read_fleet_file(path) == s
    assert [p.name for p in path.parent.iterdir()] == ["fleet.json"]  # no temporary left
    v1 = file_version(path)
    write_fleet_file(path, state())
    assert file_version(path) != v1  # a replace is a new inode
    assert json.loads(path.read_text())["experts"]["e"][0]["url"] == "http://127.0.0.1:9/v1"


GOOD = json.loads(state(heartbeat=1.0).model_dump_json())


def broken(edit: str) -> str:
    data = json.loads(json.dumps(GOOD))
    replica = data["experts"]["e"][0]
    if edit == "version":
        data["version"] = 2
    elif edit == "publisher":
        del data["publisher"]
    elif edit == "url":
        replica["url"] = "127.0.0.1:9"
    elif edit == "restarts":
        replica["restarts"] = -1
    elif edit == "state":
        replica["state"] = "sleeping"
    elif edit == "extra":
        data["surprise"] = 1
    return json.dumps(data)


@pytest.mark.parametrize(("edit", "field"), [
    ("version", "version"), ("publisher", "publisher"), ("url", "experts.e.0.url"),
    ("restarts", "experts.e.0.restarts"), ("state", "experts.e.0.state"),
    ("extra", "surprise"),
])
def test_invalid_fleet_names_the_field(edit: str, field: str) -> None:
    with pytest.raises(FleetFileError) as info:
        parse_fleet("f.json", broken(edit))
    assert info.value.field == field and "f.json" in str(info.value)


def test_invalid_json_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"version": 1,')
    with pytest.raises(FleetFileError, match="invalid JSON"):
        read_fleet_file(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        read_fleet_file(tmp_path / "none.json")


def test_liveness_from_heartbeat_and_publisher_pid() -> None:
    assert state().is_live(stale_s=5)
    assert not state(heartbeat=time.time() - 60).is_live(stale_s=5)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert state(pid=gone.pid).publisher_gone()
    assert not state(pid=gone.pid).is_live(stale_s=5)


def test_fleet_file_default_is_per_config_file(tmp_path: Path) -> None:
    text = "experts: [{name: a, backend: openai, model: m, urls: ['http://127.0.0.1:9/v1']}]\n"
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text)
    a, b = load_config(tmp_path / "a.yaml"), load_config(tmp_path / "b.yaml")
    assert a.workers.fleet_file == default_fleet_file(tmp_path / "a.yaml")
    assert a.workers.fleet_file != b.workers.fleet_file
    assert Path(a.workers.fleet_file).name.startswith("fleet-")
    (tmp_path / "c.yaml").write_text(text + "workers: {fleet_file: run/fleet.json}\n")
    assert fleet_path(load_config(tmp_path / "c.yaml")) == tmp_path / "run" / "fleet.json"
    in_code = GatewayConfig.model_validate(
        {"experts": [{"name": "a", "backend": "litellm", "model": "x/y"}]})
    assert fleet_path(in_code).name == "fleet.json"
