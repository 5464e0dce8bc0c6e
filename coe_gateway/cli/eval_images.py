"""``coe-gateway eval images``: the image-routing evaluation on MATH-V (and MathVista's text
proxy), resumable; writes ``report.md``, ``summary.json``, plots and ``rows.jsonl``.

    coe-gateway eval images                      # the full run (about 20 min on 2 cores)
    coe-gateway eval images --quick --out DIR    # 400 records, MMR split, kNN + LinearMF
    coe-gateway eval images --report-only        # rewrite the report from rows.jsonl
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_OUT = Path("eval/reports/mathv_images")
DEFAULT_CACHE = "~/.cache/coe-gateway/eval/mathv_images"


def eval_images(
    suite: Annotated[Path, typer.Option(help="the MATH-V suite (data, fixed prices)",
                                        exists=True, dir_okay=False)] = Path("eval/mathv.yaml"),
    out: Annotated[Path, typer.Option(help="report folder (rows.jsonl there is resumed)")
                   ] = DEFAULT_OUT,
    cache: Annotated[str, typer.Option(help="folder of the MMR split's choices")
                     ] = DEFAULT_CACHE,
    quick: Annotated[bool, typer.Option(help="400 records, MMR split, kNN + LinearMF, "
                                        "T vs T+all-concat (a CI check)")] = False,
    mathvista: Annotated[Path | None, typer.Option(
        help="MathVista suite for the text-proxy section (none with --quick)")
    ] = Path("eval/mathvista.yaml"),
    n_boot: Annotated[int, typer.Option(min=100, help="bootstrap resamples")] = 1000,
    router: Annotated[list[str] | None, typer.Option(help="router kinds (repeat; default "
                                                     "all five)")] = None,
    report_only: Annotated[bool, typer.Option(help="only rewrite the report")] = False,
) -> None:
    """Image-aware routers vs the same routers on text only, with controls and intervals."""
    from dataclasses import replace

    from coe_gateway.config import expand
    from coe_gateway.eval.images.report import write_report
    from coe_gateway.eval.images.run import Settings, run
    from coe_gateway.eval.images.store import RowStore

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache_dir = Path(expand(cache))
    s = Settings(suite=suite, out=out, cache=cache_dir, n_boot=n_boot)
    s = s.quick() if quick else s
    if router:
        s = replace(s, routers=tuple(router))
    store = RowStore(out / "rows.jsonl", cache_dir) if report_only else run(s, typer.echo)
    vista = None
    if mathvista is not None and not quick:
        from coe_gateway.eval.images.mathvista import run_mathvista

        vista = RowStore(out / "mathvista_rows.jsonl", cache_dir / "mathvista") \
            if report_only else run_mathvista(mathvista, out, cache_dir, s.n_boot,
                                              log=typer.echo)
    command = "coe-gateway eval images " + " ".join(sys.argv[3:]) if len(sys.argv) > 3 \
        else "coe-gateway eval images"
    limits = ", ".join(f"{k} on the folds of seed(s) {list(v)}" if v else f"{k} on the MMR "
                       "split only" for k, v in s.fold_seeds_of.items() if k in s.routers)
    notes = [f"CPU budget: {limits or 'no limits'}; every other router on every split."]
    commands = [command, "coe-gateway eval images --report-only   # rewrite from rows.jsonl",
                "coe-gateway eval images --quick --out DIR  # CI check: 400 records, ~25 s"]
    path = write_report(store, out, commands, vista, notes)
    typer.echo(f"report {path}")
