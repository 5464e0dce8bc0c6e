"""Fixtures of the router tests: a small slice of real MMLU-Pro records (240 queries, five
models) and a static encoder distilled from the shipped MiniLM for that slice's tokens only
(seconds instead of minutes), with the caches in a temporary directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from coe_gateway.records import RecordSet, load_jsonl

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
MODELS = ["gemini-1.5-pro-002", "gemini-1.5-flash-002", "Meta-Llama-3_1-70B-Instruct",
          "Mistral-7B-v0.1", "Llama-2-7b-hf"]
N_RECORDS = 240


@pytest.fixture(scope="session")
def mmlu_slice_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSONL file: every 50th MMLU-Pro record, five models."""
    src = SHARED_DATA / "mmlu_pro" / "records.jsonl.gz"
    if not src.exists():
        pytest.skip(f"no shared data at {src}")
    from coe_gateway.records import iter_jsonl

    out = tmp_path_factory.mktemp("data") / "mmlu_slice.jsonl"
    with out.open("w", encoding="utf-8") as fh:
        for n, obj in iter_jsonl(src):
            if n % 50 == 0 and n // 50 <= N_RECORDS:
                obj["scores"] = {m: obj["scores"][m] for m in MODELS if m in obj["scores"]}
                obj.pop("output_chars", None)
                fh.write(json.dumps(obj) + "\n")
    return out


@pytest.fixture(scope="session")
def mmlu_models_json(mmlu_slice_path: Path) -> Path:
    return SHARED_DATA / "mmlu_pro" / "models.json"


@pytest.fixture(scope="session")
def mmlu_slice(mmlu_slice_path: Path) -> RecordSet:
    return load_jsonl(mmlu_slice_path)


@pytest.fixture(scope="session")
def static_dir(tmp_path_factory: pytest.TempPathFactory, mmlu_slice: RecordSet) -> Path:
    """A static encoder restricted to the slice's tokens (and a few test sentences)."""
    from coe_gateway.routers.distill import build_static_encoder

    extra = ["What is the capital of France?", "Solve for x: 2x + 3 = 7.",
             "Write a poem about the sea.", "def add(a, b): return a + b"]
    return build_static_encoder(tmp_path_factory.mktemp("enc") / "static", dim=64,
                                only_texts=mmlu_slice.prompts + extra)


@pytest.fixture
def encoder(static_dir: Path) -> dict[str, object]:
    return {"kind": "static", "path": str(static_dir)}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("COE_GATEWAY_CACHE", str(tmp_path / "cache"))
    yield


@pytest.fixture(scope="session")
def train_test(mmlu_slice: RecordSet) -> tuple[RecordSet, RecordSet]:
    """The first 180 records to train, the last 60 to predict."""
    n = 180
    return mmlu_slice.subset(np.arange(n)), mmlu_slice.subset(np.arange(n, len(mmlu_slice)))
