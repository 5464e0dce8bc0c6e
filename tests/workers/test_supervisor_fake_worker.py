"""The supervisor's process management with fake workers: `workers.python` points to a
script that accepts vLLM's command line and serves the fake upstream on `--port`, so
launch, readiness, crash restart with backoff, shutdown and orphan-freedom are tested in
seconds. (The same paths with real vLLM workers: tests/integration.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from coe_gateway.config import GatewayConfig
from coe_gateway.testing.servers import pid_alive
from coe_gateway.workers.supervisor import Supervisor, worker_argv, worker_env

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


def config(tmp_path: Path, replicas: int = 2) -> GatewayConfig:
    fake = tmp_path / "fakepy"
    fake.write_text(FAKE_PY.format(python=sys.executable))
    fake.chmod(0o755)
    return GatewayConfig.model_validate({
        "experts": [{"name": "e", "backend": "vllm", "model": "m", "replicas": replicas,
                     "cpu_threads": ["0", "1"][:replicas]}],
        "workers": {"python": str(fake), "log_dir": str(tmp_path / "logs"),
                    "health_interval_s": 0.2, "restart_backoff_s": 0.3, "base_port": 18100},
    })



def test_worker_command_line_and_env(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    e = cfg.experts[0]
    argv = worker_argv(cfg, e, 1, 8123)
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--port") + 1] == "8123"
    assert argv[argv.index("--max-model-len") + 1] == str(e.context_length)
    env = worker_env(e, 1)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    gpu = GatewayConfig.model_validate({"experts": [
        {"name": "g", "backend": "vllm", "model": "m", "replicas": 2, "gpus": [[0, 1], [2, 3]]}]})
    g = gpu.experts[0]
    assert worker_env(g, 1)["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert "--tensor-parallel-size" in worker_argv(gpu, g, 1, 1)


async def test_fake_worker_crash_is_restarted_and_stop_leaves_nothing(tmp_path: Path) -> None:
    restarted: list[str] = []
    sup = Supervisor(config(tmp_path), on_restart=restarted.append)
    await sup.start(wait_ready=True)
    try:
        assert all(w.replica.healthy for w in sup.workers)
        ports = {w.port for w in sup.workers}
        assert len(ports) == 2
        victim = sup.workers[0]
        old_pid = victim.process.pid  # type: ignore[union-attr]
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (victim.restarts == 1 and victim.replica.healthy):
            assert time.monotonic() < deadline, "worker was not restarted"
            await asyncio.sleep(0.1)
        assert victim.process.pid != old_pid  # type: ignore[union-attr]
        assert restarted == ["e"]
        assert sup.workers[1].restarts == 0
    finally:
        pids = [w.process.pid for w in sup.workers if w.process]
        await sup.stop()
    assert not [p for p in pids if pid_alive(p)]
    assert all(w.replica.state == "stopped" for w in sup.workers)


def test_fake_worker_dies_with_a_killed_gateway(tmp_path: Path) -> None:
    """SIGKILL the process that owns the supervisor: its workers must not survive it."""
    (tmp_path / "cfg.json").write_text(config(tmp_path, replicas=1).model_dump_json())
    script = textwrap.dedent(
        f"""
        import asyncio, json
        from coe_gateway.config import GatewayConfig
        from coe_gateway.workers.supervisor import Supervisor
        async def main():
            cfg = GatewayConfig.model_validate_json(open({str(tmp_path / 'cfg.json')!r}).read())
            sup = Supervisor(cfg)
            await sup.start(wait_ready=True)
            print(sup.workers[0].process.pid, flush=True)
            await asyncio.sleep(600)
        asyncio.run(main())
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(owner.stdout.readline())  # type: ignore[union-attr]
        assert pid_alive(worker_pid)
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 20
        while pid_alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(worker_pid)
    finally:
        owner.kill()
