"""``coe-gateway features``: image feature stores.

    coe-gateway features extract RECORDS... [--kinds pixels,ocr,stats] --out DIR
        [--threads 1] [--limit N]
    coe-gateway features ocr IMAGE...

``extract`` computes the features of every record's ``image`` (a path relative to the
records file) into ``DIR/<fingerprint>.safetensors``, resumable: images already stored there
are skipped and progress is saved every few images.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def _image_paths(records: list[Path], limit: int | None) -> list[str | None]:
    from coe_gateway.records import iter_jsonl

    paths: list[str | None] = []
    for file in records:
        for _, obj in iter_jsonl(file):
            image = obj.get("image")
            paths.append(str(file.parent / image) if isinstance(image, str) else None)
    return paths[:limit] if limit is not None else paths


def extract(
    records: Annotated[list[Path], typer.Argument(help="routing records (JSONL[.gz]) with an "
                                                  "'image' path per record", exists=True)],
    out: Annotated[Path, typer.Option(help="directory of the store files")],
    kinds: Annotated[str, typer.Option(help="feature kinds, comma-separated")] =
        "pixels,ocr,stats",
    threads: Annotated[int, typer.Option(help="torch / onnxruntime threads (0: default)")] = 1,
    limit: Annotated[int | None, typer.Option(help="only the first N records")] = None,
) -> None:
    """Compute image features of records into store files (skips what is stored)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
        TimeElapsedColumn, TimeRemainingColumn

    from coe_gateway.vision.features.featurizer import compute_features

    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    names = [k.strip() for k in kinds.split(",") if k.strip()]
    options = {"ocr": {"threads": threads}} if threads > 0 and "ocr" in names else {}
    paths = _image_paths(records, limit)
    started = time.perf_counter()
    with Progress(TextColumn("features"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("features", total=None)
        batch = compute_features(paths, names, options, out,
                                 progress=lambda d, t: bar.update(task, completed=d, total=t))
    typer.echo(f"{int(batch.present.sum())}/{len(paths)} images with features "
               f"({', '.join(names)}) in {out}; {time.perf_counter() - started:.1f} s")


def ocr(images: Annotated[list[Path], typer.Argument(help="image files", exists=True)]) -> None:
    """Print the text OCR reads in each image."""
    from PIL import Image

    from coe_gateway.vision.features.ocr import OCRExtractor

    extractor = OCRExtractor()
    for path in images:
        typer.echo(f"{path}: {extractor.text(Image.open(path))}")


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Image feature stores: extract, inspect.", no_args_is_help=True)
    sub.command("extract")(extract)
    sub.command("ocr")(ocr)
    app.add_typer(sub, name="features")
