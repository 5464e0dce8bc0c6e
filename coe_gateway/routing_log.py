"""The routing log: one JSON line per attempt, for replay in the evaluator
(``coe-gateway eval replay``) and for building profiles of live experts.

Fields: ts, request_id, tenant, query, category, router, policy, strategy, expert (this
attempt's), attempt (its index in the request), verdict (accepted / rejected / failed),
final (true for the attempt whose answer the caller got, or the last one of a failed
request: the request's own record), purpose, ranking, predicted ({expert: {quality,
confidence}}), cost_usd, latency_s, prompt_tokens, completion_tokens, outcome (quality where
known, else null), status (HTTP status of the attempt), error.

Records are serialised and written by a thread of their own: the event loop only enqueues.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import IO, Any

_STOP = object()


class RoutingLog:
    """Appends records to a JSONL file from a writer thread (enqueueing is all a request
    pays); :meth:`flush` waits until everything enqueued is on disk."""

    def __init__(self, path: str | Path, max_query_chars: int = 2000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_query_chars = max_query_chars
        self._fh: IO[str] = self.path.open("a", encoding="utf-8")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="coe-routing-log", daemon=True)
        self._thread.start()

    def write(self, record: dict[str, Any]) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(record)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            while True:  # drain what else is queued into one write
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._write(batch)
                    return
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        lines = []
        for record in batch:
            if isinstance(record.get("query"), str):
                record = {**record, "query": record["query"][: self.max_query_chars]}
            lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._fh.write("".join(lines))
        self._fh.flush()
        with self._idle:
            self._pending -= len(batch)
            self._idle.notify_all()

    def flush(self, timeout_s: float = 5.0) -> None:
        """Until every record written so far is in the file."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
        self._fh.close()
