"""The LiteLLM proxy for ``coe-gateway bench compare``: its own virtual environment (its pins
clash with ours), its config over the fast fake upstream, and how to start it.

The venv lives in ``.bench/litellm-venv`` under the repository root (git-ignored) unless
another path is given; :func:`setup_venv` creates it with ``pip install 'litellm[proxy]'``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO_ROOT / ".bench" / "litellm-venv"
PACKAGE_SPEC = "litellm[proxy]"


@dataclass(frozen=True)
class LiteLLMEnv:
    """A virtual environment holding the LiteLLM proxy."""

    venv: Path

    @property
    def executable(self) -> Path:
        return self.venv / "bin" / "litellm"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def installed(self) -> bool:
        return self.executable.exists() and self.python.exists()

    def version(self) -> str:
        """The installed ``litellm`` version (``?`` when it cannot be read)."""
        try:
            out = subprocess.run(
                [str(self.python), "-c",
                 "import importlib.metadata as m; print(m.version('litellm'))"],
                capture_output=True, text=True, timeout=60, check=True)
        except (OSError, subprocess.SubprocessError):
            return "?"
        return out.stdout.strip() or "?"


def base_python() -> str:
    """The interpreter to build the venv from: ``python3.11`` when on PATH, else this one."""
    return shutil.which("python3.11") or sys.executable


def setup_venv(env: LiteLLMEnv, say: Callable[[str], None] = print,
               spec: str = PACKAGE_SPEC) -> None:
    """Create the venv and install ``spec`` into it (pip picks the newest that installs);
    CalledProcessError when pip fails."""
    if not env.python.exists():
        say(f"creating {env.venv} with {base_python()}")
        env.venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([base_python(), "-m", "venv", str(env.venv)], check=True)
    say(f"installing {spec!r} (with uvloop and httptools, as uvicorn[standard] would) into "
        f"{env.venv}; this takes a few minutes")
    subprocess.run([str(env.python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
                   check=True)
    subprocess.run([str(env.python), "-m", "pip", "install", "-q", spec, "uvloop", "httptools"],
                   check=True)
    say(f"installed litellm {env.version()}")


def proxy_config(upstream_base: str, model_name: str = "auto",
                 upstream_model: str = "x") -> dict[str, Any]:
    """A LiteLLM proxy config: one deployment ``model_name`` -> the fake upstream, no
    database, no master key, no callbacks, spend and error logs off."""
    return {
        "model_list": [{
            "model_name": model_name,
            "litellm_params": {"model": f"openai/{upstream_model}", "api_base": upstream_base,
                               "api_key": "fake"},
        }],
        "litellm_settings": {
            "telemetry": False, "set_verbose": False, "json_logs": False,
            "turn_off_message_logging": True, "drop_params": True, "request_timeout": 60,
            "callbacks": [], "success_callback": [], "failure_callback": [],
        },
        "general_settings": {"disable_spend_logs": True, "disable_error_logs": True},
    }


def write_config(path: Path, upstream_base: str) -> Path:
    """Write :func:`proxy_config` to ``path``."""
    path.write_text(yaml.safe_dump(proxy_config(upstream_base), sort_keys=False))
    return path


def proxy_argv(env: LiteLLMEnv, config: Path, port: int, workers: int = 1) -> list[str]:
    """The command line of one LiteLLM proxy (``workers`` uvicorn processes)."""
    return [str(env.executable), "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", str(workers)]


def proxy_environ(master_key: str) -> dict[str, str]:
    """Environment for the proxy: its master key (it refuses to start without one; clients
    send it as Bearer), quiet logs, no outbound fetches, no telemetry, and none of this
    venv's variables leaking into the other one."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update({
        "LITELLM_MASTER_KEY": master_key,
        "LITELLM_LOG": "ERROR", "LITELLM_OFFLINE_MODE": "true",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
        "LITELLM_MODE": "PRODUCTION", "DISABLE_ADMIN_UI": "True",
        "NO_DOCS": "True", "NO_REDOC": "True",
    })
    return env
