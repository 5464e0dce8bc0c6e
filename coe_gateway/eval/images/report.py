"""The report of the image evaluation: ``report.md``, ``summary.json`` (MMR-Bench's schema per
router, plus extras) and PNG plots, written from the rows file alone."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coe_gateway.eval import metrics
from coe_gateway.eval.images import figures, tables
from coe_gateway.eval.images.store import RowStore

HEADER = """# Image-aware routing on MATH-V

Does routing on the image as well as the text choose better among 15 VLM configurations
than the same router on the text alone? Data: `shared/data/mathv` (3,040 problems, each with
one real image; 0/1 graded answers of 15 configurations). Costs: the fixed per-model prices
of `eval/mathv.yaml` (tokens x price, 576 image tokens a query; set before any result).
"""


def _f(x: Any, d: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{d}f}"


def _ci(d: dict[str, Any] | None, k: int = 4) -> str:
    if not d:
        return "-"
    return f"{d['estimate']:+.{k}f} [{d['low']:+.{k}f}, {d['high']:+.{k}f}]"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def cost_table(split: dict[str, Any]) -> list[str]:
    rows = [[m, _f(c["input_per_mtok"], 2), _f(c["output_per_mtok"], 2),
             _f(c["mean_output_tokens"], 1), c["source"], _f(c["test_accuracy"], 3),
             _f(c["test_usd_per_1k"], 4)] for m, c in split["costs"].items()]
    return _table(["model", "in USD/1M", "out USD/1M", "mean out tokens (train)", "source",
                   "test acc", "test USD/1k"], rows)


def main_table(store: RowStore) -> list[str]:
    c, d = tables.curves(store, "mmr"), tables.deltas(store)
    adj = tables.holm_adjusted(d)
    folds = tables.fold_stats(store)
    rows = []
    for (router, variant), r in c.items():
        m = r["metrics"]
        dd = d.get((router, variant), {})
        fs = folds.get((router, variant))
        rows.append([router, variant, _f(m["nauc"]), _f(m["nauc_common"]), _f(m["ps"]),
                     _f(m["qnc"], 2), _f(m["auroc"], 3), _f(m["brier"], 4),
                     _ci(dd.get("nauc_common")), _ci(dd.get("ps")),
                     _f(adj.get((router, variant)), 3),
                     f"{fs.mean:+.4f} ± {fs.sd:.4f} (n={fs.n})" if fs else "-"])
    return _table(["router", "variant", "nAUC", "nAUC common", "Ps", "QNC", "AUROC", "Brier",
                   "Δ nAUC common [95%]", "Δ Ps [95%]", "p (Holm)", "folds Δ nAUC common"],
                  rows)


def controls_table(store: RowStore) -> list[str]:
    """Per router, every image variant that has controls: Δ nAUC common vs T of the variant
    and of each control, and the variant against its own shuffled twin."""
    d, twin = tables.deltas(store), tables.deltas(store, field="vs_shuffled")
    rows = []
    for router, base in [k for k in d if tables.is_image_variant(k[1])]:
        if (router, f"{base}/shuffled") not in d:
            continue
        rows.append([router, base] + [_ci(d.get((router, f"{base}{c}"), {}).get("nauc_common"))
                                      for c in ("", "/shuffled", "/blank", "/text-at-test")]
                    + [_ci(twin.get((router, base), {}).get("nauc_common"))])
    out = _table(["router", "variant", "Δ vs T", "shuffled Δ vs T", "blank Δ vs T",
                  "text-at-test Δ vs T", "variant vs its shuffled twin"], rows)
    noisy = sorted({r for (r, v), x in d.items() if v.endswith("/shuffled")
                    and x["nauc_common"]["low"] > 0})
    if noisy:
        out += ["", f"A shuffled-image control beats T with its interval above 0 for "
                f"{', '.join(noisy)}: there the text-only fit itself is weak (the extra input "
                "changes the fit, not what it knows), so a gain over T alone is no evidence "
                "that the image helps; the column against the shuffled twin is the fair test."]
    return out


def points_table(split: dict[str, Any]) -> list[str]:
    p = split["points"]
    rows = [[k, _f(v["accuracy"], 4), _f(v["cost"] * 1000, 4)] for k, v in p.items()
            if not k.startswith("model:")]
    return _table(["reference point (MMR split test)", "accuracy", "USD / 1k"], rows)


def target_lines(t: dict[str, Any]) -> list[str]:
    out = ["## Targets (MMR split, paired bootstrap)", ""]
    b = t.get("beats_text")
    if b:
        verdict = ("met, and after Holm" if b["met_after_holm"] else
                   "met on the raw interval only, not after Holm") if b["met"] else "not met"
        out.append(f"1. **Best image-aware router beats the same router on text only** (nAUC "
                   f"common, 95% interval above 0): **{verdict}**. "
                   f"Best variant {b['router']} {b['variant']}: Δ {_ci(b)} (raw p "
                   f"{_f(b['p'], 3)}, Holm {_f(b['holm_p'], 3)}; picked as the best of many, "
                   f"so the raw interval is optimistic). Against its own shuffled-image "
                   f"control: Δ {_ci(b['vs_shuffled'])}."
                   + (f" On the folds (80% train) the same variant's Δ vs T is "
                      f"{b['folds']['mean']:+.4f} ± {b['folds']['sd']:.4f} (n="
                      f"{b['folds']['n']})." if b.get("folds") else ""))
    pk = t.get("peak_accuracy")
    if pk:
        out.append(f"2. **Peak accuracy >= best single + 2 points** ({t['best_single']} "
                   f"{_f(t['best_single_accuracy'])} -> needed {_f(pk['needed'])}): "
                   f"**{'met' if pk['met'] else 'not met'}**; that variant's Ps {_f(pk['ps'])}, "
                   f"best Ps of any image variant {_f(pk['best_ps_any'])}.")
    to = t["text_only"]
    per = "; ".join(f"{r} {_ci(v)}" for r, v in to["per_router"].items())
    verdict = "not run" if not per else "met" if to["met"] else "not met"
    out.append(f"3. **Trained on images, routing text-only queries no worse than text-only** "
               f"(Δ nAUC common of T+all/text-at-test vs T, upper bound >= 0): "
               f"**{verdict}**{': ' + per if per else ''}. Identical by construction: a "
               "query without image features goes through the router's text head, fitted on "
               "the same train rows with the same options as the text-only router.")
    return out + [""]


def _panels(store: RowStore) -> tuple[dict[str, Any], dict[str, Any]]:
    c, d = tables.curves(store, "mmr"), tables.deltas(store)
    panels: dict[str, dict[str, Any]] = {}
    for router in dict.fromkeys(k[0] for k in c if k[0] != "reference"):
        image = [k for k in d if k[0] == router and tables.is_image_variant(k[1])]
        best = max(image, key=lambda k: d[k]["nauc_common"]["estimate"]) if image else None
        chosen = ([best[1]] if best else []) + ["T"] + \
            [v for (r, v) in c if r == router and v.endswith("/shuffled")]
        panels[router] = {v: c[(router, v)]["curve"] for v in chosen if (router, v) in c}
    refs = {f"ref: {v}": c[("reference", v)]["curve"] for v in ("single", "subject-prior")
            if ("reference", v) in c}
    return panels, refs


def write_plots(store: RowStore, out: Path) -> list[str]:
    split = tables.split_row(store, "mmr")
    panels, refs = _panels(store)
    names = [figures.frontiers(panels, refs, split["points"], out / "frontiers_mmr.png",
                               "MATH-V, MMR split (train 20% / test 80%): best image variant "
                               "vs text only (T) vs shuffled images").name]
    d, adj = tables.deltas(store), tables.holm_adjusted(tables.deltas(store))
    rows = [(f"{r} {v}" + (" *" if adj.get((r, v), 1.0) < 0.05 else ""),
             x["nauc_common"]["estimate"], x["nauc_common"]["low"], x["nauc_common"]["high"])
            for (r, v), x in d.items()]
    names.append(figures.forest(rows, out / "delta_nauc_mmr.png",
                                "Δ nAUC (common grid) vs the same router on text only\n95% "
                                "paired bootstrap, MMR split (* Holm p < 0.05)",
                                "Δ nAUC common").name)
    return names


def summary_json(store: RowStore) -> dict[str, Any]:
    """MMR-Bench's per-router schema (router, metrics{nAUC,Ps,QNC}, single_model, pareto)
    for every (router, variant) of the MMR split, plus extras."""
    split = tables.split_row(store, "mmr")
    ref, d = split["reference"], tables.deltas(store)
    single = {"name": ref["best"], "accuracy": ref["best_accuracy"], "cost": ref["best_cost"]}
    out = []
    for (router, variant), r in tables.curves(store, "mmr").items():
        m = r["metrics"]
        front = metrics.pareto_frontier(r["curve"]["cost"], r["curve"]["accuracy"])
        out.append({"router": f"{router}:{variant}", "metrics": {
            "nAUC": m["nauc"], "Ps": m["ps"],
            "QNC": m["qnc"] if math.isfinite(m["qnc"]) else None},
            "single_model": single, "pareto": front.tolist(),
            "extras": {"nauc_common": m["nauc_common"], "auroc": m["auroc"],
                       "brier": m["brier"], "delta_vs_T": d.get((router, variant))}})
    return {"split": "mmr (train 20% / test 80%, seed 42)", "results": out,
            "targets": tables.targets(store)}


def mathvista_lines(store: RowStore | None) -> list[str]:
    if store is None or not store.rows:
        return []
    c, d = tables.curves(store, "mmr"), tables.deltas(store)
    folds = tables.fold_stats(store, base_variant="question")
    ref = tables.split_row(store, "mmr")["reference"]
    rows = [[r, v, _f(x["metrics"]["nauc_common"]), _f(x["metrics"]["ps"]),
             _ci(d.get((r, v), {}).get("nauc_common")),
             (lambda fs: f"{fs.mean:+.4f} ± {fs.sd:.4f}" if fs else "-")(folds.get((r, v)))]
            for (r, v), x in c.items()]
    return ["## MathVista: a text proxy for the image (not image-aware)", "",
            "MathVista testmini ships no images here, only image-derived *text*: Bard's caption "
            "and EasyOCR text. The same text-only routers read the question alone, question + "
            "caption, or question + OCR (built from the raw fields, not the loader's joined "
            "`extra_text`). Costs are the same for all three (the suite's: question + caption "
            "+ OCR tokens). The captions were written by Bard, one of the 21 configurations: "
            "**`bard` is dropped** from the experts (its caption would leak its own view). "
            "MMR split (20/80, seed 42) and 5 folds (seed 0) stratified by category; Δ vs the "
            "question alone.", "",
            *_table(["router", "routing text", "nAUC common", "Ps", "Δ nAUC common [95%]",
                     "folds Δ (mean ± sd)"], rows), "",
            f"Best single model on the MMR split (chosen on train, `bard` dropped): "
            f"{ref['best']} {_f(ref['best_accuracy'])}.", ""]


def write_report(store: RowStore, out: Path, commands: Sequence[str],
                 mathvista: RowStore | None = None, notes: Sequence[str] = ()) -> Path:
    """Write report.md, summary.json and the plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    split = tables.split_row(store, "mmr")
    t = tables.targets(store)
    plots = write_plots(store, out)
    (out / "summary.json").write_text(json.dumps(summary_json(store), indent=1) + "\n",
                                      encoding="utf-8")
    runs = list(store.of_type("run"))
    wall = sum(r["wall_s"] for r in runs)
    folds = sorted({r["split"] for r in store.of_type("split") if r["split"] != "mmr"})
    prim = tables.deltas(store).get((tables.PRIMARY_ROUTER, tables.PRIMARY_VARIANT), {})
    lines = [HEADER, "## Commands", "", "```", *commands, "```", "",
             f"Wall time: {wall / 60:.1f} min over {len(runs)} run(s) "
             f"(2 shared CPU cores, one thread; the last run resumed the first). Blank-image "
             f"control: {runs[-1]['blank_how'] if runs else '-'}.", "",
             *[f"- {n}" for n in notes], "",
             "## Pre-registered primary comparison", "",
             f"{tables.PRIMARY_ROUTER}, {tables.PRIMARY_VARIANT} vs T, Δ nAUC on the common cost "
             f"grid, MMR split: **{_ci(prim.get('nauc_common'))}** (raw p "
             f"{_f((prim.get('nauc_common') or {}).get('p'), 3)}). Every other comparison is "
             "Holm-adjusted.", "", *target_lines(t),
             "## Splits", "",
             f"- `mmr`: MMR-Bench protocol, train 20% ({split['n_train']}) / test 80% "
             f"({split['n_test']}), seed 42; bootstrap intervals ({_boot_n(store)} resamples "
             "of the test items, choices fixed per lam) are on this split.",
             f"- folds: {len(folds)} splits (5 folds x seeds), 80/20, stratified by subject x "
             "level; the table gives mean ± sd of Δ over the folds a router ran on.", "",
             "## Results (MMR split)", "", *main_table(store), "",
             "Columns: nAUC / Ps / QNC as MMR-Bench's `eval.py` (nAUC normalised by each "
             "frontier's own cost range); nAUC common: mean frontier height on [cheapest, most "
             "expensive single model's cost], held flat outside the frontier's range; AUROC / "
             "Brier: per-model correctness prediction from the predicted quality, mean over "
             "models. Δ: variant - T of the same router. Controls: `/shuffled` images permuted "
             "across queries, `/blank` every image the blank image's features, "
             "`/text-at-test` trained with images, tested without (MMR mode 21).", "",
             "### Controls (Δ nAUC common vs T, 95% paired bootstrap)", "",
             *controls_table(store), "",
             *points_table(split), "", *[f"![{p}]({p})" for p in plots], "",
             *mathvista_lines(mathvista),
             "## Cost table (eval/mathv.yaml; MMR split)", "", *cost_table(split), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _boot_n(store: RowStore) -> int:
    return max((int(r["n_boot"]) for r in store.of_type("bootstrap")), default=0)
