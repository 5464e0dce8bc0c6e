"""The held-out comparison of the fused model against its parts (``coe-gateway eval mot``).

On the same items, the same weights and the same scoring (per-character log-likelihood of
each choice, :mod:`coe_gateway.fusion.scoring`):

- ``single:<expert>``: each frozen expert alone;
- ``top1``: the fused model's trained router picks one expert, which answers alone (same
  encoder and MLP, K=1, no interaction);
- ``oracle``: correct when any single expert is (the head-room of choosing);
- ``ensemble``: the sum of both experts' per-character log-likelihoods per choice;
- ``control``: the fused model trained without cross-attention (each primary attends to its
  own latents only: the same parameters, no peer), primary by its own router;
- ``fused``: the fused model, primary by its router.

Every item's scores are appended to ``scores.jsonl`` as they are computed, so an interrupted
run resumes where it stopped; the report is computed from that file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coe_gateway.fusion.model import MixtureOfThoughts
from coe_gateway.fusion.router import choose
from coe_gateway.fusion.scoring import pick, score_item
from coe_gateway.fusion.stats import mean_ci, paired_diff
from coe_gateway.fusion.tasks import McItem
from coe_gateway.fusion.train import question_of

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Row:
    """One item's per-character scores per scored pass (``single:<name>``, ``fused``,
    ``control``) and the routers' picks."""

    set: str
    id: str
    gold: int
    scores: dict[str, list[float]]
    routed: dict[str, int]


def _routes(models: Sequence[MixtureOfThoughts], items: Sequence[McItem]) -> list[list[int]]:
    """Each model's primary per item; the questions are embedded once per encoder."""
    from coe_gateway.routers.embedding import get_encoder

    embedded: dict[str, torch.Tensor] = {}
    out = []
    for model in models:
        key = json.dumps(model.cfg.encoder, sort_keys=True)
        if key not in embedded:
            embedded[key] = torch.from_numpy(get_encoder(model.cfg.encoder).encode(
                [question_of(it) for it in items])).float()
        with torch.no_grad():
            scores = model.router(embedded[key])
        out.append([choose(s, model.cfg.top_k)[0] for s in scores])
    return out


def score_rows(sets: dict[str, list[McItem]], fused: MixtureOfThoughts,
               control: MixtureOfThoughts | None, out: Path,
               progress: Progress = lambda _s, _i, _n: None) -> list[Row]:
    """Score every item (resuming from ``out``) and return all rows."""
    done = {(r.set, r.id): r for r in read_rows(out)} if out.exists() else {}
    with out.open("a", encoding="utf-8") as fh:
        for name, items in sets.items():
            routes, ctl_routes = (_routes([fused, control], items) if control is not None
                                  else [_routes([fused], items)[0]] * 2)
            for i, (item, r, rc) in enumerate(zip(items, routes, ctl_routes)):
                progress(name, i, len(items))
                old = done.get((name, item.id))
                if old is not None and (control is None or "control" in old.scores):
                    continue
                row = _score(name, item, fused, control, r, rc) if old is None \
                    else _add_control(old, item, control, rc)
                fh.write(json.dumps(row.__dict__) + "\n")
                fh.flush()
                done[(name, item.id)] = row
    return [done[(n, it.id)] for n, items in sets.items() for it in items]


def _score(name: str, item: McItem, fused: MixtureOfThoughts,
           control: MixtureOfThoughts | None, route: int, ctl_route: int) -> Row:
    scores = {f"single:{e.name}": score_item(fused, item, m, fuse=False).per_char
              for m, e in enumerate(fused.experts)}
    scores["fused"] = score_item(fused, item, route).per_char
    routed = {"fused": route, "control": ctl_route}
    if control is not None:
        scores["control"] = score_item(control, item, ctl_route).per_char
    return Row(name, item.id, item.gold, scores, routed)


def _add_control(row: Row, item: McItem, control: MixtureOfThoughts | None,
                 ctl_route: int) -> Row:
    """A row scored before the control was given, completed with it."""
    assert control is not None
    scores = {**row.scores, "control": score_item(control, item, ctl_route).per_char}
    return Row(row.set, row.id, row.gold, scores, {**row.routed, "control": ctl_route})


def read_rows(path: Path) -> list[Row]:
    """The rows of ``path``; a later line for the same item replaces an earlier one."""
    rows: dict[tuple[str, str], Row] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = Row(**json.loads(line))
            rows[(row.set, row.id)] = row
    return list(rows.values())


def correctness(rows: Sequence[Row], experts: Sequence[str]) -> dict[str, np.ndarray]:
    """Per system, a 0/1 vector over ``rows``."""
    singles = [f"single:{e}" for e in experts]
    out: dict[str, list[bool]] = {s: [] for s in
                                  [*singles, "top1", "oracle", "ensemble", "control", "fused"]}
    for r in rows:
        hits = {s: pick(r.scores[s]) == r.gold for s in singles}
        for s in singles:
            out[s].append(hits[s])
        out["top1"].append(hits[singles[r.routed["fused"]]])
        out["oracle"].append(any(hits.values()))
        summed = np.sum([r.scores[s] for s in singles], axis=0)
        out["ensemble"].append(pick(list(summed)) == r.gold)
        out["fused"].append(pick(r.scores["fused"]) == r.gold)
        if "control" in r.scores:
            out["control"].append(pick(r.scores["control"]) == r.gold)
    return {k: np.asarray(v, dtype=bool) for k, v in out.items() if len(v) == len(rows)}


def report(rows: Sequence[Row], experts: Sequence[str], baseline: str = "fused") -> str:
    """Markdown: accuracy with 95% bootstrap intervals per set and system, then the paired
    difference of ``baseline`` against every other system (interval, exact McNemar p)."""
    sets = list(dict.fromkeys(r.set for r in rows))
    lines = []
    for name in sets:
        sub = [r for r in rows if r.set == name]
        acc = correctness(sub, experts)
        lines += [f"### {name} (n = {len(sub)})", "",
                  f"| system | accuracy (95% CI) | {baseline} minus system (95% CI) "
                  "| McNemar p |", "| --- | ---: | ---: | ---: |"]
        for system, hits in acc.items():
            ci = mean_ci(hits)
            cell = f"{100 * ci.estimate:.1f} ({100 * ci.low:.1f} to {100 * ci.high:.1f})"
            if system == baseline:
                lines.append(f"| **{system}** | **{cell}** | | |")
                continue
            d = paired_diff(acc[baseline], hits)
            lines.append(f"| {system} | {cell} | {100 * d.diff:+.1f} ({100 * d.low:+.1f} to "
                         f"{100 * d.high:+.1f}) | {d.p_mcnemar:.3g} |")
        lines.append("")
    return "\n".join(lines)


def summary(rows: Iterable[Row], experts: Sequence[str]) -> dict[str, Any]:
    """Accuracy per set and system, for JSON output."""
    rows = list(rows)
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r.set for r in rows):
        acc = correctness([r for r in rows if r.set == name], experts)
        out[name] = {k: float(v.mean()) for k, v in acc.items()}
    return out
