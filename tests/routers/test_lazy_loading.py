"""Loading a saved router imports nothing heavy: torch and sentence-transformers come in on
the first prediction, and only for a router whose encoder needs them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from coe_gateway.routers.knn import KNNRouter

CHECK = """
import json, sys
from coe_gateway.routers.registry import load_router
from coe_gateway.routers.base import Query
heavy = lambda: [m for m in ("torch", "sentence_transformers", "sklearn") if m in sys.modules]
r = load_router(sys.argv[1])
after_load = heavy()
r.predict([Query("What is the capital of France?")])
print(json.dumps({"after_load": after_load, "after_predict": heavy()}))
"""


def _imports(path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHECK, str(path)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _router(encoder: dict, dim: int) -> KNNRouter:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, dim)).astype(np.float32)
    return KNNRouter(["a", "b"], encoder=encoder, k=3,
                     embeddings=x / np.linalg.norm(x, axis=1, keepdims=True),
                     scores=rng.integers(0, 2, size=(10, 2)).astype(np.float32))


def test_static_router_never_imports_torch(encoder, tmp_path) -> None:
    got = _imports(_router(encoder, 64).save(tmp_path / "static"))
    assert got == {"after_load": [], "after_predict": []}


@pytest.mark.slow
def test_minilm_router_imports_torch_on_first_predict(tmp_path) -> None:
    got = _imports(_router({"kind": "sentence-transformers", "threads": 1}, 384)
                   .save(tmp_path / "minilm"))
    assert got["after_load"] == []
    assert {"torch", "sentence_transformers"} <= set(got["after_predict"])
