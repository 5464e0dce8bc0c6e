"""Training the fused model: the paper's objective, adapted to two experts (section 2 of
``shared/research/mixture-of-thoughts.md``).

Each step takes a batch of (question, gold answer) pairs and, for every expert as the
primary, the NLL of the answer's tokens under the fused primary (the paper's L_LM: target
tokens only). The router is trained in the same step:

- with M = K = 2 every expert is always active, so Top-K, its Gumbel relaxation and the
  *balance of active sets* are moot: only the choice of the primary is left. The router is
  trained toward the primary whose fused answer NLL (per character, so that the two
  tokenizers compare) is lower, which is the choice that minimises L_LM and what the
  paper's straight-through estimator approximates; cross-entropy on ``softmax(s / tau)``;
- L_ent (maximise the router's entropy, weight 0.01) is kept as in the paper;
- L_bal is kept on the *primary* fractions (the squared coefficient of variation of the
  batch's mean router probabilities, weight 0.01), the one balance left with two experts;
- L_con (a second forward with another Gumbel-sampled expert set, symmetric KL between the
  two output distributions) is dropped: the two sets always coincide here, and the
  alternative, two different primaries, would compare distributions over different
  vocabularies (49,152 vs 262,144 tokens).

Deterministic with a seed (the epoch orders and every step's dropout draw derive from it)
and resumable: a checkpoint (trainable weights, AdamW moments, step) is written every
``save_every`` steps; a rerun with the same settings continues from it and ends with the
same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file

from coe_gateway.fusion.config import MotConfig
from coe_gateway.fusion.experts import FrozenExpert
from coe_gateway.fusion.model import MixtureOfThoughts, collate
from coe_gateway.fusion.store import load_experts, save
from coe_gateway.fusion.tasks import McItem, train_set

CHECKPOINT = "checkpoint"


class TrainConfig(BaseModel):
    """How to train (defaults: the CPU run of the README)."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(1.0, gt=0)
    batch: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup: int = Field(20, ge=0)
    clip: float = Field(1.0, gt=0)
    tau: float = Field(1.0, gt=0)
    lambda_ent: float = Field(0.01, ge=0)
    lambda_bal: float = Field(0.01, ge=0)
    seed: int = 42
    split_seed: int = 0
    limit: int | None = Field(None, ge=1, description="train on the first N items only")
    save_every: int = Field(25, ge=1)
    threads: int | None = None


@dataclass
class StepLog:
    step: int
    total: int
    lm: float
    router: float
    picked: list[float]


def question_of(item: McItem) -> str:
    """The router's input: the question without the "Question: ... Answer:" frame."""
    q = item.query
    q = q.removeprefix("Question: ")
    return q.removesuffix("\nAnswer:").strip()


def _lr(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def _order(n: int, epoch: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def _batch_indices(step: int, n: int, cfg: TrainConfig) -> list[int]:
    per_epoch = math.ceil(n / cfg.batch)
    epoch, k = divmod(step, per_epoch)
    order = _order(n, epoch, cfg.seed)
    return order[k * cfg.batch:(k + 1) * cfg.batch]


def _router_losses(model: MixtureOfThoughts, emb: torch.Tensor, per_char: torch.Tensor,
                   cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(router loss, probabilities): CE toward the lower-NLL primary, plus L_ent and L_bal."""
    scores = model.router(emb) / cfg.tau                      # (B, M)
    probs = scores.softmax(-1)
    target = per_char.detach().argmin(dim=1)                  # (B,)
    ce = torch.nn.functional.cross_entropy(scores, target)
    entropy = -(probs * probs.clamp_min(1e-9).log()).sum(-1).mean()
    f = probs.mean(0)
    balance = (f.std(unbiased=False) / f.mean()) ** 2
    return ce - cfg.lambda_ent * entropy + cfg.lambda_bal * balance, probs


def train_step(model: MixtureOfThoughts, items: Sequence[McItem], emb: torch.Tensor,
               cfg: TrainConfig) -> tuple[torch.Tensor, float, torch.Tensor]:
    """The step's loss, its LM part and the router's probabilities."""
    pairs = [(it.query, it.continuations[it.gold]) for it in items]
    m = len(model.experts)
    lm = torch.zeros(())
    per_char = []
    for p in range(m):
        batch = collate(model.experts, p, [q for q in range(m) if q != p], pairs)
        logp = model(batch)                                   # (B, N)
        n_tok = (batch.targets >= 0).sum(1).clamp_min(1)
        nll = -logp.sum(1)                                    # (B,)
        lm = lm + (nll / n_tok).mean() / m
        per_char.append(nll / batch.chars)
    router, probs = _router_losses(model, emb, torch.stack(per_char, dim=1), cfg)
    return lm + router, lm.item(), probs.detach()


def _save_checkpoint(model: MixtureOfThoughts, opt: torch.optim.AdamW, step: int,
                     out: Path, fingerprint: str) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if st:
                tensors[f"adam.{names[id(p)]}.exp_avg"] = st["exp_avg"].contiguous()
                tensors[f"adam.{names[id(p)]}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
    ck = out / CHECKPOINT
    ck.mkdir(parents=True, exist_ok=True)
    tmp = ck / f".state.{os.getpid()}"
    save_file(tensors, str(tmp))
    os.replace(tmp, ck / "state.safetensors")
    (ck / "state.json").write_text(json.dumps({"step": step, "fingerprint": fingerprint}))


def _load_checkpoint(model: MixtureOfThoughts, opt: torch.optim.AdamW, out: Path,
                     fingerprint: str) -> int:
    """The step to continue from (0 when there is no matching checkpoint)."""
    ck = out / CHECKPOINT
    if not (ck / "state.json").exists():
        return 0
    meta = json.loads((ck / "state.json").read_text())
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(f"{ck}: a checkpoint of other settings is there; remove it or "
                         "choose another --out")
    tensors = load_file(str(ck / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    step = int(meta["step"])
    for n, p in model.named_parameters():
        if f"adam.{n}.exp_avg" in tensors:
            opt.state[p] = {"step": torch.tensor(float(step)),
                            "exp_avg": tensors[f"adam.{n}.exp_avg"],
                            "exp_avg_sq": tensors[f"adam.{n}.exp_avg_sq"]}
    return step


def _embed(items: Sequence[McItem], encoder: dict[str, Any]) -> torch.Tensor:
    from coe_gateway.routers.embedding import get_encoder

    vectors = get_encoder(encoder).encode([question_of(it) for it in items])
    return torch.from_numpy(vectors).float()


def train(mot: MotConfig, cfg: TrainConfig, out: Path, models_dir: Path,
          on_step: Callable[[StepLog], None] = lambda _s: None,
          stop_after_s: float | None = None, experts: list[FrozenExpert] | None = None,
          ) -> MixtureOfThoughts:
    """Train (or continue training) into ``out``; returns the final model, saved there.
    ``experts``: already loaded ones (else loaded from ``models_dir``)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    items = train_set(cfg.split_seed)[: cfg.limit]
    emb = _embed(items, mot.encoder)
    model = MixtureOfThoughts(experts or load_experts(mot, models_dir), mot, emb.shape[1])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    fingerprint = json.dumps([mot.model_dump(), cfg.model_dump(exclude={"save_every",
                                                                        "threads"})])
    step = _load_checkpoint(model, opt, out, fingerprint)
    total = math.ceil(cfg.epochs * math.ceil(len(items) / cfg.batch))
    started = time.monotonic()
    model.train()
    while step < total:
        idx = _batch_indices(step, len(items), cfg)
        torch.manual_seed(cfg.seed * 7919 + step)          # the step's dropout draw
        for g in opt.param_groups:
            g["lr"] = _lr(step, total, cfg)
        loss, lm, probs = train_step(model, [items[i] for i in idx], emb[idx], cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        step += 1
        on_step(StepLog(step, total, lm, loss.item() - lm, probs.mean(0).tolist()))
        timed_out = stop_after_s is not None and time.monotonic() - started > stop_after_s
        if step % cfg.save_every == 0 or step == total or timed_out:
            _save_checkpoint(model, opt, step, out, fingerprint)
        if timed_out:
            break
    model.eval()
    info = {"train": cfg.model_dump(), "steps": step, "planned_steps": total,
            "items": len(items), "finished": step >= total}
    save(model, out, info)
    return model
