"""Saving and loading a fused model: ``mot.safetensors`` (router and interaction layers only,
a few MB) and ``mot.json`` (its :class:`MotConfig`, the router's input width, how it was
trained). The frozen experts are never copied: ``mot.json`` names their checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from coe_gateway.fusion.config import MotConfig
from coe_gateway.fusion.experts import FrozenExpert
from coe_gateway.fusion.model import MixtureOfThoughts

WEIGHTS = "mot.safetensors"
META = "mot.json"


def trainable_state(model: MixtureOfThoughts) -> dict[str, torch.Tensor]:
    """The router's and the interaction layers' tensors (what is trained and saved), stored
    as float16 (half the bytes; they are read back into float32 parameters)."""
    return {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}


def save(model: MixtureOfThoughts, out: Path, info: dict[str, Any]) -> None:
    """Write the model to ``out`` atomically (a reader never sees half a file)."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {"config": model.cfg.model_dump(), "d_router": model.router.net[0].in_features,
            "info": info}
    tmp = out / f".{WEIGHTS}.{os.getpid()}"
    save_file(trainable_state(model), str(tmp))
    os.chmod(tmp, 0o644)  # a model to share, not a secret
    os.replace(tmp, out / WEIGHTS)
    tmp_meta = out / f".{META}.{os.getpid()}"
    tmp_meta.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_meta, out / META)


def read_meta(path: Path) -> dict[str, Any]:
    meta_file = path / META
    if not meta_file.exists():
        raise FileNotFoundError(f"{meta_file}: no fused model here (train one with "
                                "`coe-gateway train mot`)")
    data: dict[str, Any] = json.loads(meta_file.read_text(encoding="utf-8"))
    return data


def load_experts(cfg: MotConfig, models_dir: Path) -> list[FrozenExpert]:
    out = []
    for ref in cfg.experts:
        p = Path(ref.path).expanduser()
        out.append(FrozenExpert.load(ref.name, p if p.is_absolute() else models_dir / p,
                                     cfg.stacks))
    return out


def load(path: Path, models_dir: Path, experts: list[FrozenExpert] | None = None
         ) -> MixtureOfThoughts:
    """The fused model saved at ``path``, on experts loaded from ``models_dir`` (or given)."""
    meta = read_meta(path)
    cfg = MotConfig.model_validate(meta["config"])
    model = MixtureOfThoughts(experts or load_experts(cfg, models_dir), cfg,
                              int(meta["d_router"]))
    model.load_state_dict(load_file(str(path / WEIGHTS)))
    model.eval()
    return model
