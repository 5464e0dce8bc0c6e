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

from coe_gateway.config import GatewayConfig
from coe_gateway.testing.fake_workers import fake_python
from coe_gateway.testing.servers import pid_alive
from coe_gateway.workers.kinds import WORKER_KINDS
from coe_gateway.workers.supervisor import Supervisor


def config(tmp_path: Path, replicas: int = 2) -> GatewayConfig:
    fake = fake_python(tmp_path)
    return GatewayConfig.model_validate({
        "experts": [{"name": "e", "backend": "vllm", "model": "m", "replicas": replicas,
                     "cpu_threads": ["0", "1"][:replicas]}],
        "workers": {"python": str(fake), "log_dir": str(tmp_path / "logs"),
                    "health_interval_s": 0.2, "restart_backoff_s": 0.3, "base_port": 18100},
    })


def test_vllm_worker_kind_command_line_and_env(tmp_path: Path) -> None:
    vllm = WORKER_KINDS["vllm"]
    cfg = config(tmp_path)
    e = cfg.experts[0]
    argv = vllm.argv(cfg, e, 1, 8123)
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--port") + 1] == "8123"
    assert argv[argv.index("--max-model-len") + 1] == str(e.context_length)
    env = vllm.env(e, 1)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    gpu = GatewayConfig.model_validate({"experts": [
        {"name": "g", "backend": "vllm", "model": "m", "replicas": 2, "gpus": [[0, 1], [2, 3]]}]})
    g = gpu.experts[0]
    assert vllm.env(g, 1)["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert "--tensor-parallel-size" in vllm.argv(gpu, g, 1, 1)
    assert vllm.health_url(8123) == "http://127.0.0.1:8123/health"
    assert vllm.base_url(8123) == "http://127.0.0.1:8123/v1"


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


LEAVES_A_CHILD = textwrap.dedent(
    """\
    #!{python}
    # Like the fake interpreter, but first starts a child in its process group (as vLLM
    # starts its engine core) and writes the child's pid next to this script.
    import subprocess, sys, uvicorn
    from pathlib import Path
    from coe_gateway.testing.fake_upstream import FakeUpstream
    child = subprocess.Popen(["sleep", "600"])
    (Path(sys.argv[0]).parent / "child.pid").write_text(str(child.pid))
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    uvicorn.run(FakeUpstream(), host="127.0.0.1", port=port, log_level="warning")
    """
)


async def test_fake_worker_killed_alone_takes_its_process_group_along(tmp_path: Path) -> None:
    """vLLM's engine processes outlive a SIGKILLed API server: the supervisor kills the
    rest of a dead worker's process group before restarting it."""
    script = tmp_path / "leaves-a-child"
    script.write_text(LEAVES_A_CHILD.format(python=sys.executable))
    script.chmod(0o755)
    cfg = config(tmp_path, replicas=1)
    cfg = cfg.model_copy(update={"workers": cfg.workers.model_copy(
        update={"python": str(script)})})
    sup = Supervisor(cfg)
    await sup.start(wait_ready=True)
    try:
        (w,) = sup.workers
        orphan = int((tmp_path / "child.pid").read_text())
        assert pid_alive(orphan)
        os.kill(w.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while not (w.restarts == 1 and w.replica.healthy):
            assert time.monotonic() < deadline, "worker was not restarted"
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 10
        while _running(orphan) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not _running(orphan)
    finally:
        await sup.stop()


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
