"""Worker kinds: the programs launched locally for experts (see :mod:`.base` for the
contract). Importing this package registers the built-in kinds: ``vllm`` (:mod:`.vllm`)
and ``mot`` (:mod:`.mot`, a fused Mixture-of-Thoughts model)."""

from coe_gateway.workers.kinds.base import (
    WORKER_KINDS,
    WorkerKind,
    is_local,
    local_backend,
    local_experts,
    register_worker_kind,
    worker_kind,
)
from coe_gateway.workers.kinds.mot import MotWorker
from coe_gateway.workers.kinds.vllm import VllmWorker

__all__ = [
    "WORKER_KINDS", "MotWorker", "VllmWorker", "WorkerKind", "is_local", "local_backend",
    "local_experts", "register_worker_kind", "worker_kind",
]
