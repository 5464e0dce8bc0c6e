"""``coe-gateway features extract`` (resumable) and the features benchmark's inputs."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from coe_gateway.cli import build_app
from coe_gateway.vision.features.base import build_extractor
from coe_gateway.vision.features.bench import bench_images, verdict
from coe_gateway.vision.features.featurizer import decode
from coe_gateway.vision.features.store import read_store


def test_extract_writes_a_store_and_resumes(tmp_path: Path) -> None:
    for name, colour in (("a", "white"), ("b", "black")):
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"{name}.png")
    rows = [{"id": "1", "image": "a.png"}, {"id": "2", "image": "b.png"}, {"id": "3"}]
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "store"
    args = ["features", "extract", str(records), "--kinds", "stats", "--out", str(out)]
    first = CliRunner().invoke(build_app(), args)
    assert first.exit_code == 0, first.output
    assert "2/3 images with features (stats)" in first.output
    store = out / f"{build_extractor('stats').fingerprint()}.safetensors"
    assert len(read_store(store)) == 2
    before = store.stat().st_mtime_ns
    again = CliRunner().invoke(build_app(), args)
    assert again.exit_code == 0 and store.stat().st_mtime_ns == before  # nothing recomputed


def test_bench_inputs_are_1024x768_jpegs(tmp_path: Path) -> None:
    Image.new("RGB", (300, 100), "white").save(tmp_path / "1.jpg")
    inputs = bench_images(1, tmp_path)
    assert len(inputs) == 2  # the real one and the synthetic diagram
    for data in inputs:
        image = decode(data)
        assert image.format == "JPEG" and image.size == (1024, 768)


def test_verdict_line() -> None:
    rows: list[dict[str, float | str]] = [
        {"step": "serving: decode+pixels+stats", "n": 5.0, "p50_ms": 42.0, "p99_ms": 50.0,
         "mean_ms": 43.0}]
    assert "p50 42.0 ms meets the target p50 <= 60 ms" in verdict(rows)
    rows[0]["p50_ms"] = 61.0
    assert "misses" in verdict(rows)
