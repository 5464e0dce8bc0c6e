"""The fleet file: where a workers service says its workers are.

``coe-gateway workers`` writes it (:func:`write_fleet_file`) on every state change of a
worker and at every health interval (the heartbeat); gateway processes in ``attach`` mode
read it (:func:`read_fleet_file`). It is JSON::

    {"version": 1,
     "publisher": {"pid": 4242, "host": "box", "started_at": 1718000000.0,
                   "heartbeat": 1718000123.4},
     "ready": true,
     "experts": {"smollm2-135m-instruct": [
         {"replica": 0, "url": "http://127.0.0.1:8100/v1", "pid": 4250, "state": "ready",
          "healthy": true, "restarts": 0, "updated_at": 1718000120.1}]}}

Times are Unix seconds. ``ready``: every replica has answered its health check at least
once since the service started. ``state`` is the supervisor's: ``starting``, ``ready``,
``unhealthy``, ``restarting``, ``stopped``. A write goes to a temporary file in the same
directory, then ``os.replace``: a reader sees the old file or the new one, never a part.
A stopped service leaves its last file, every replica ``stopped``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coe_gateway.config import GatewayConfig, default_fleet_file, expand

FLEET_VERSION = 1
"""The format version this module writes and reads."""
ReplicaState = Literal["starting", "ready", "unhealthy", "restarting", "stopped"]


class FleetFileError(ValueError):
    """A fleet file that cannot be read or is not a valid fleet: names the file, the field
    (dotted path) and the reason."""

    def __init__(self, path: str, field: str, reason: str) -> None:
        super().__init__(f"{path}: {field}: {reason}")
        self.path, self.field, self.reason = path, field, reason


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PublishedReplica(_Strict):
    """One worker process as its supervisor last saw it."""

    replica: int = Field(ge=0)
    url: str = Field(pattern=r"^https?://")
    pid: int | None = Field(None, ge=1)
    state: ReplicaState
    healthy: bool
    restarts: int = Field(0, ge=0)
    updated_at: float


class Publisher(_Strict):
    """The workers service that wrote the file."""

    pid: int = Field(ge=1)
    host: str
    started_at: float
    heartbeat: float


class FleetState(_Strict):
    """A whole fleet file."""

    version: Literal[1] = 1
    publisher: Publisher
    ready: bool
    experts: dict[str, list[PublishedReplica]]

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the publisher's last heartbeat."""
        return (time.time() if now is None else now) - self.publisher.heartbeat

    def publisher_gone(self) -> bool:
        """True when the publisher runs on this host and its process no longer exists."""
        if self.publisher.host != socket.gethostname():
            return False
        try:
            os.kill(self.publisher.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def is_live(self, stale_s: float, now: float | None = None) -> bool:
        """The publisher's heartbeat is recent and (on this host) its process exists."""
        return self.age_s(now) <= stale_s and not self.publisher_gone()


def fleet_path(cfg: GatewayConfig) -> Path:
    """The fleet file of ``cfg``: ``workers.fleet_file``, or the default of a config not
    read from a file (:func:`~coe_gateway.config.default_fleet_file`)."""
    return Path(expand(cfg.workers.fleet_file or default_fleet_file(None)))


def write_fleet_file(path: Path, state: FleetState) -> None:
    """Write ``state`` to ``path`` atomically (temporary file + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(state.model_dump_json(indent=1), encoding="utf-8")
    os.replace(tmp, path)


def parse_fleet(path: str | Path, text: str) -> FleetState:
    """Validate the text of a fleet file; FleetFileError names the field and the reason."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FleetFileError(str(path), f"line {exc.lineno}", f"invalid JSON: {exc.msg}") from exc
    try:
        return FleetState.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        raise FleetFileError(str(path), field, err["msg"]) from exc


def read_fleet_file(path: str | Path) -> FleetState:
    """Read and validate a fleet file (FileNotFoundError when there is none yet)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FleetFileError(str(p), "<file>", f"cannot read: {exc.strerror or exc}") from exc
    return parse_fleet(p, text)


def file_version(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever the file is replaced (inode, mtime, size); None when absent."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
