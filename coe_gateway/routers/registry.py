"""Router kinds by name, imported lazily so that a router's heavy dependencies (torch, an
encoder) load only when a config names it.

``ROUTER_KINDS`` maps a kind to ``"module:Class"``; add a line here for a new router family.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from coe_gateway.routers.base import Router, read_saved

ROUTER_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "prior": "coe_gateway.routers.prior:PriorRouter",
        "knn": "coe_gateway.routers.knn:KNNRouter",
        "cluster": "coe_gateway.routers.cluster:ClusterRouter",
        "coe": "coe_gateway.routers.coe:CoERouter",
        "mlp": "coe_gateway.routers.mlp:MLPRouter",
        "mf": "coe_gateway.routers.mf:MFRouter",
        "irt": "coe_gateway.routers.irt:IRTRouter",
        "profile": "coe_gateway.routers.profile:ProfileRouter",
        "image-knn": "coe_gateway.routers.multimodal.knn:ImageKNNRouter",
        "image-linearmf": "coe_gateway.routers.multimodal.linearmf:ImageLinearMFRouter",
        "image-mlpmf": "coe_gateway.routers.multimodal.mlpmf:ImageMLPMFRouter",
        "image-kmeans": "coe_gateway.routers.multimodal.kmeans:ImageKMeansRouter",
        "image-cmr": "coe_gateway.routers.multimodal.cmr:ImageCMRRouter",
    }
)


def router_class(kind: str) -> type[Router]:
    """The Router subclass registered under ``kind`` (ValueError naming the known kinds)."""
    try:
        target = ROUTER_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown router kind {kind!r}; known: {sorted(ROUTER_KINDS)}") from None
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Router)):
        raise TypeError(f"{target} is not a Router")
    return cls


def load_router(path: str | Path) -> Router:
    """Load a saved router directory (``router.json`` + ``weights.safetensors``)."""
    meta, arrays = read_saved(path)
    cls = router_class(meta["kind"])
    return cls.from_saved(meta["experts"], meta.get("config", {}), arrays)


def build_router(
    kind: str, experts: Sequence[str], path: str | None, options: Mapping[str, Any]
) -> Router:
    """A router from a config entry: loaded from ``path`` when given, else built from options."""
    if path is not None:
        router = load_router(path)
        if router.kind != kind:
            raise ValueError(f"{path} holds a {router.kind!r} router, config says {kind!r}")
        return router
    return router_class(kind)(experts, **dict(options))
