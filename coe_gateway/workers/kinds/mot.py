"""The ``mot`` worker kind: a fused Mixture-of-Thoughts model served by
``python -m coe_gateway.fusion.server`` (OpenAI-compatible; reached with the ``openai``
transport).

``model`` is the fused model's directory (``mot.json`` + ``mot.safetensors``, a few MB):
absolute; else, for a config loaded from a file, beside that file when it exists there (a
trained fused model committed with its config, as a router's ``path`` is); else under
``models_dir``, like any checkpoint (see :attr:`MotWorker.model_beside_config`). The frozen
experts it names in ``mot.json`` are read from ``models_dir``.

CPU only: ``cpu_threads[i]`` (a CPU list, ``0-3``) pins replica *i* to those cores
(``--cpus``; torch runs one thread per core, ``OMP_NUM_THREADS`` too); ``vllm_args`` are
passed on as extra server arguments (e.g. ``["--max-queue", "4"]``). ``fused_from`` names
the experts it is made of, for its price (see :class:`~coe_gateway.config.ExpertConfig`).
"""

from __future__ import annotations

from coe_gateway.config import ExpertConfig, GatewayConfig, expand
from coe_gateway.fusion.cpus import cpu_list
from coe_gateway.fusion.wire import MOT_KIND
from coe_gateway.workers.kinds.base import WorkerKind, python_of, register_worker_kind


@register_worker_kind(MOT_KIND)
class MotWorker(WorkerKind):
    """One fused-model server per replica."""

    transport = "openai"
    model_beside_config = True
    """A relative ``model`` resolves against the config file first (see
    :func:`coe_gateway.config.load_config`)."""

    def argv(self, cfg: GatewayConfig, expert: ExpertConfig, index: int, port: int) -> list[str]:
        argv = [
            python_of(cfg), "-m", "coe_gateway.fusion.server",
            "--model", cfg.model_path(expert),
            "--served-model-name", expert.upstream_model,
            "--host", "127.0.0.1", "--port", str(port),
            "--models-dir", expand(cfg.models_dir),
        ]
        if expert.cpu_threads:
            argv += ["--cpus", expert.cpu_threads[index]]
        return argv + list(expert.vllm_args)

    def env(self, expert: ExpertConfig, index: int) -> dict[str, str]:
        env = super().env(expert, index)
        if expert.cpu_threads:
            env["OMP_NUM_THREADS"] = str(len(cpu_list(expert.cpu_threads[index])))
        env.update(expert.env)
        return env
