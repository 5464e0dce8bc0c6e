"""MathVista testmini: captions and OCR text as a *text proxy* for the image (no images).

Not an image-aware evaluation: MathVista ships no images here, only the image-derived text
its authors published (``image_caption``, written by Bard; ``image_ocr``, EasyOCR). Three
routing texts go through the same text-only routers (``features=[]``): the question alone,
question + caption, question + OCR. The records loader joins caption and OCR into
``extra_text``; here each routing text is built explicitly from the raw fields. Costs stay
those of the suite (question + caption + OCR tokens, what the text-only configurations read)
for every routing text, so only the router's input changes.

The captions were written by Bard, one of the 21 configurations: a router reading them sees
that model's view of the image, so ``bard`` is dropped from the experts (``drop``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coe_gateway.eval.images import bootstrap
from coe_gateway.eval.images.data import EvalData
from coe_gateway.eval.images.evaluate import measure, router_quality, split_context
from coe_gateway.eval.images.splits import Split, mmr_split, stratified_folds, strata
from coe_gateway.eval.images.store import RowStore
from coe_gateway.eval.images.variants import Variant
from coe_gateway.records import iter_jsonl

TEXTS = ("question", "question+caption", "question+ocr")
DROP = ("bard",)
ROUTERS = ("image-knn", "image-linearmf")


def routing_texts(path: str, ids: Sequence[str], prompts: Sequence[str]) -> dict[str, list[str]]:
    """{text variant: one routing text per record}, from the raw caption / OCR fields."""
    raw = {obj["id"]: obj for _, obj in iter_jsonl(path)}
    cap = [str(raw[i].get("image_caption") or "") for i in ids]
    ocr = [str(raw[i].get("image_ocr") or "") for i in ids]
    return {"question": list(prompts),
            "question+caption": [f"{p}\n{c}" if c else p for p, c in zip(prompts, cap)],
            "question+ocr": [f"{p}\n{o}" if o else p for p, o in zip(prompts, ocr)]}


def load_variants(suite_path: str | Path, drop: Sequence[str] = DROP) -> dict[str, EvalData]:
    """One EvalData per routing text (same records, costs and scores; text differs)."""
    from coe_gateway.eval.costs import resolve_prices
    from coe_gateway.eval.datasets import default_models_json, load_models_json, load_records
    from coe_gateway.eval.suite import load_suite
    from coe_gateway.routers.embedding import embed_texts

    suite = load_suite(suite_path)
    records = load_records(suite.data.paths, suite.data.format)
    records = records.select_models([m for m in records.models if m not in drop])
    models_json = load_models_json(suite.data.models_json or default_models_json(suite.data.paths))
    prices = resolve_prices(records.models, suite.costs, models_json, str(suite_path))
    texts = routing_texts(suite.data.paths[0], records.ids, records.prompts)
    n = len(records)
    return {name: EvalData(suite, str(suite_path), records, prices,
                           np.nan_to_num(records.scores, nan=0.0),
                           np.asarray(embed_texts(t, None), np.float32), {},
                           np.zeros(n, bool), {}, "no images")
            for name, t in texts.items()}


def mathvista_splits(data: EvalData, seed: int = 0) -> list[Split]:
    """The MMR split and 5 folds (one seed) stratified by category."""
    labels = strata(data.subjects, [None] * len(data.records), 5)
    return [mmr_split(len(data.records)), *stratified_folds(labels, 5, (seed,))]


def run_mathvista(suite_path: str | Path, out: Path, cache: Path, n_boot: int = 1000,
                  points: int = 60, seed: int = 0, routers: Sequence[str] = ROUTERS,
                  log: Callable[[str], None] = print) -> RowStore:
    """Every routing text x router x split; a paired bootstrap vs the question alone on the
    MMR split. Rows in ``out/mathvista_rows.jsonl`` (resumable)."""
    store = RowStore(out / "mathvista_rows.jsonl", cache / "mathvista")
    datas = load_variants(suite_path)
    first = datas[TEXTS[0]]
    for split in mathvista_splits(first, seed):
        for kind in routers:
            choices: dict[str, np.ndarray] = {}
            for name, data in datas.items():
                ctx = split_context(data, split, points)
                if not store.has(type="split", split=split.name, router="", variant=""):
                    store.add({"type": "split", "split": split.name, "reference": vars(ctx.ref),
                               "n_train": len(split.train), "n_test": len(split.test)})
                if store.has(type="curve", split=split.name, router=kind, variant=name):
                    got = store.load_choices(split.name, kind, name)
                    if got is not None:
                        choices[name] = got
                    continue
                quality, timing = router_quality(kind, Variant("T", "concat"), ctx, seed, {})
                row, ch = measure(ctx, quality)
                store.add({"type": "curve", "split": split.name, "router": kind,
                           "variant": name, **timing, **row})
                store.save_choices(split.name, kind, name, ch)
                choices[name] = ch
                log(f"mathvista {split.name} {kind} {name}: "
                    f"nAUC(common) {row['metrics']['nauc_common']:.4f}")
            if split.is_mmr:
                _bootstrap(store, split, kind, choices, split_context(first, split, points),
                           n_boot, seed)
    return store


def _bootstrap(store: RowStore, split: Split, kind: str, choices: dict[str, np.ndarray],
               ctx: Any, n_boot: int, seed: int) -> None:
    if store.has(type="bootstrap", split=split.name, router=kind, variant="*") or \
            len(choices) < len(TEXTS):
        return
    est = {k: store.rows[f"curve|{split.name}|{kind}|{k}"]["metrics"] for k in choices}
    data = bootstrap.Resampled(ctx.scores_test, ctx.real_test, ctx.best,
                               bootstrap.resample_weights(len(split.test), n_boot, seed))
    deltas = bootstrap.paired_deltas(data, choices, {k: "question" for k in TEXTS[1:]}, est)
    store.add({"type": "bootstrap", "split": split.name, "router": kind, "variant": "*",
               "n_boot": n_boot, "deltas": {k: {m: vars(d) for m, d in v.items()}
                                             for k, v in deltas.items()}})
