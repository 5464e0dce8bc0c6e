"""Running generations for the fused server: one at a time, on one worker thread, behind a
bounded wait queue.

:meth:`Runner.submit` admits a :class:`~coe_gateway.fusion.generate.Generation` (or raises
:class:`QueueFullError` when ``max_queue`` requests already wait behind the running one) and
returns its :class:`Job`; :meth:`Job.deltas` is the async iterator of its text deltas. Leaving
that iterator before its end (the client went away: the server's task is cancelled, or the
iterator closed) sets the generation's ``cancel``, so it stops within one token, or never
starts when it was still waiting. The single worker thread is what serialises generations,
not the request's task: a cancelled request cannot let the next one start early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from coe_gateway.errors import GatewayError

if TYPE_CHECKING:
    from coe_gateway.fusion.generate import Generation

log = logging.getLogger("coe_gateway.fusion.server")

RETRY_AFTER_S = 1
_END = object()


class QueueFullError(GatewayError):
    """503: a generation runs and ``max_queue`` more wait; retry later."""

    status_code = 503
    error_type = "server_error"
    code = "queue_full"


class GenerationError(GatewayError):
    """500: the fused model failed while generating (logged with its traceback)."""

    error_type = "server_error"
    code = "generation_failed"


class Job:
    """One admitted generation: its deltas reach the event loop through a queue."""

    def __init__(self, gen: Generation, loop: asyncio.AbstractEventLoop) -> None:
        self.gen = gen
        self._loop = loop
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._ended = False

    def _put(self, item: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def run(self) -> None:
        """On the worker thread: the whole generation (skipped when already cancelled)."""
        try:
            if self.gen.cancel.is_set():
                self.gen.finish_reason = "cancelled"
            else:
                for delta in self.gen:
                    self._put(delta)
            self._put(_END)
        except Exception as exc:  # noqa: BLE001 - reported to the request, logged here
            log.exception("generation failed")
            self._put(GenerationError(f"The fused model failed while generating: {exc}"))

    async def deltas(self) -> AsyncIterator[str]:
        """The text deltas; GenerationError when the model failed. Leaving early cancels."""
        try:
            while True:
                item = await self._queue.get()
                if item is _END:
                    self._ended = True
                    return
                if isinstance(item, GatewayError):
                    self._ended = True
                    raise item
                assert isinstance(item, str)
                yield item
        finally:
            if not self._ended:
                self.gen.cancel.set()

    async def text(self) -> str:
        """All of the answer (for a body)."""
        return "".join([d async for d in self.deltas()])


class Runner:
    """Serialises generations on one thread; at most ``max_queue`` wait behind the running one."""

    def __init__(self, max_queue: int = 16, history: int = 64) -> None:
        self.max_queue = max_queue
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mot-generate")
        self._lock = threading.Lock()
        self.pending = 0
        """Admitted and not finished: the running generation and the waiting ones."""
        self.finished: deque[Generation] = deque(maxlen=history)
        """The last generations that ended, oldest first (for health and tests)."""
        self.finish_reasons: Counter[str] = Counter()
        self._jobs: set[Job] = set()

    def submit(self, gen: Generation) -> Job:
        """Admit ``gen`` (QueueFullError when the queue is full) and queue it to run."""
        with self._lock:
            if self.pending > self.max_queue:
                raise QueueFullError(
                    f"The fused model is busy: one generation runs and {self.max_queue} wait; "
                    "retry later.", retry_after_s=RETRY_AFTER_S)
            self.pending += 1
        job = Job(gen, asyncio.get_running_loop())
        self._jobs.add(job)
        future = self._pool.submit(job.run)
        future.add_done_callback(lambda _f: self._done(job))
        return job

    def _done(self, job: Job) -> None:
        with self._lock:
            self.pending -= 1
            self.finished.append(job.gen)
            self.finish_reasons[job.gen.finish_reason or "error"] += 1
            self._jobs.discard(job)

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {"pending": self.pending, "max_queue": self.max_queue,
                    "finished": dict(self.finish_reasons)}

    def shutdown(self) -> None:
        """Cancel every admitted generation and wait for the thread to stop."""
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.gen.cancel.set()
        self._pool.shutdown(wait=True)

