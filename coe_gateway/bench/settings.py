"""The settings of one ``coe-gateway bench compare`` run (its CLI options) and the constants
every part of it shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coe_gateway.bench.litellm_env import DEFAULT_VENV

Say = Callable[[str], None]

HOST = "127.0.0.1"
CHAT_PATH = "/v1/chat/completions"
PROMPT = "What is the capital of France?"
UPSTREAM_MODEL = "x"
DEFAULT_RATES: tuple[float, ...] = (200.0, 500.0, 1000.0, 2000.0)


@dataclass(frozen=True)
class CompareSettings:
    """Everything one comparison run needs (the CLI options)."""

    seconds: float = 5.0
    rates: tuple[float, ...] = DEFAULT_RATES
    concurrency: int = 16
    streams: int = 128
    chunks: int = 64
    chunk_interval_s: float = 0.02
    stall_s: float | None = None
    timeout_s: float = 5.0
    warmup_s: float = 1.0
    max_tokens: int = 8
    skip_litellm: bool = False
    setup_litellm: bool = False
    litellm_venv: Path = DEFAULT_VENV
    with_budget: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    gateway_workers: int = 1
    stop_on_saturation: bool = True
    log_dir: Path | None = None

    @property
    def stall_threshold_s(self) -> float:
        """A gap between two events longer than this is a stall: 10x the upstream's chunk
        interval, at most 250 ms, unless set."""
        if self.stall_s is not None:
            return self.stall_s
        return min(10 * self.chunk_interval_s, 0.25)

    @property
    def stream_timeout_s(self) -> float:
        """How long one stream may take before it counts as failed: at least 60 s, and four
        times the upstream's pacing of ``chunks`` chunks."""
        return max(60.0, 4 * self.chunks * self.chunk_interval_s)
