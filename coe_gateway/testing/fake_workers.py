"""Fake local workers for tests of the supervisor, the workers service and multi-process
serving: ``workers.python`` points to a stand-in interpreter that accepts vLLM's command
line and serves :class:`~coe_gateway.testing.fake_upstream.FakeUpstream` on ``--port``, so
experts keep ``backend: vllm`` and every process path is the real one, in seconds."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

from coe_gateway.testing.servers import free_port

FAKE_PY = textwrap.dedent(
    """\
    #!{python}
    # A stand-in interpreter: ignores "-m vllm..." and serves the fake upstream on --port.
    import sys, uvicorn
    from coe_gateway.testing.fake_upstream import FakeUpstream
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    uvicorn.run(FakeUpstream(), host="127.0.0.1", port=port, log_level="warning")
    """
)


def fake_python(directory: Path) -> Path:
    """Write the stand-in interpreter into ``directory``; its path."""
    path = directory / "fakepy"
    path.write_text(FAKE_PY.format(python=sys.executable))
    path.chmod(0o755)
    return path


def fake_workers_config(directory: Path, experts: tuple[str, ...] = ("e",), replicas: int = 1,
                        **workers: Any) -> dict[str, Any]:
    """A gateway config (as a dict) whose experts are fake ``vllm`` workers, with fast health
    checks and restarts, logs and fleet file under ``directory``, a free server port and
    ``workers`` settings overridden by the keyword arguments."""
    return {
        "experts": [{"name": name, "backend": "vllm", "model": "m", "replicas": replicas}
                    for name in experts],
        "server": {"port": free_port(), "log_level": "warning"},
        "workers": {"python": str(fake_python(directory)), "log_dir": str(directory / "logs"),
                    "fleet_file": str(directory / "fleet.json"), "base_port": free_port(),
                    "health_interval_s": 0.2, "restart_backoff_s": 0.3, "fleet_stale_s": 2.0,
                    "ready_timeout_s": 60, **workers},
    }
