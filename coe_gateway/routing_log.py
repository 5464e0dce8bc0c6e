"""The routing log: one JSON line per routing decision, for replay in the evaluator
(``coe-gateway eval replay``) and for building profiles of live experts.

Fields: ts, request_id, tenant, query, category, router, policy, expert (who answered),
ranking, predicted ({expert: {quality, confidence}}), cost_usd, latency_s, prompt_tokens,
completion_tokens, outcome (quality where known, else null), status (HTTP status).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import IO, Any


class RoutingLog:
    """Appends decision records to a JSONL file (line-buffered, thread-safe)."""

    def __init__(self, path: str | Path, max_query_chars: int = 2000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_query_chars = max_query_chars
        self._fh: IO[str] = self.path.open("a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        if isinstance(record.get("query"), str):
            record = {**record, "query": record["query"][: self.max_query_chars]}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            self._fh.close()
