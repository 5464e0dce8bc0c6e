"""An OpenAI-compatible server for one fused (Mixture-of-Thoughts) model: what the ``mot``
worker kind launches for an expert (:mod:`coe_gateway.workers.kinds.mot`).

    python -m coe_gateway.fusion.server --model DIR --served-model-name NAME \\
        [--host 127.0.0.1] [--port 8000] [--models-dir D] [--cpus 0-3] [--threads N] \\
        [--max-queue 16]

``GET /health`` (200 once the model is loaded; the body says how many generations run, wait
and ended, by finish reason), ``GET /v1/models``, ``POST /v1/chat/completions`` (plain and
streamed; ``stream_options.include_usage``; ``max_tokens`` / ``max_completion_tokens``,
``temperature``, ``top_p``, ``stop``, ``seed``; one choice). Requests are validated by the
gateway's own :class:`~coe_gateway.protocol.ChatRequest`, errors are OpenAI error bodies.
Every answer carries the ``coe_fusion`` extension (:mod:`coe_gateway.fusion.wire`).

Generations run one at a time on a worker thread (:mod:`coe_gateway.fusion.runner`); past
``--max-queue`` waiting requests the answer is a 503 with ``Retry-After``. A client that goes
away cancels its generation (within one token). Messages reach the primary's chat template
as text (content parts joined; ``developer`` is ``system``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from coe_gateway.errors import GatewayError, RequestError, UnknownModelError
from coe_gateway.fusion import wire
from coe_gateway.fusion.cpus import cpu_list
from coe_gateway.fusion.generate import Generation, Sampling
from coe_gateway.fusion.model import MixtureOfThoughts
from coe_gateway.fusion.runner import Job, Runner
from coe_gateway.protocol import ChatRequest, ModelCard, ModelList, message_text, routing_text
from coe_gateway.server.errors import install
from coe_gateway.sse import DONE

DEFAULT_MAX_TOKENS = 256
"""Tokens generated when the request sets no ``max_tokens``."""

Receive = Callable[[], Awaitable[Any]]


def chat_messages(req: ChatRequest) -> list[dict[str, str]]:
    """The messages as the chat template takes them: text content, ``developer`` as system."""
    return [{"role": "system" if m["role"] == "developer" else str(m["role"]),
             "content": message_text(m)} for m in req.messages]


def sampling_of(req: ChatRequest) -> Sampling:
    """The request's sampling settings (OpenAI's defaults where it sets none)."""
    def number(name: str, default: float) -> float:
        value = req.get(name)
        return default if value is None else float(value)

    stop = req.get("stop")
    seed = req.get("seed")
    return Sampling(max_tokens=req.output_budget or DEFAULT_MAX_TOKENS,
                    temperature=number("temperature", 1.0), top_p=number("top_p", 1.0),
                    stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
                    seed=None if seed is None else int(seed) % 2**64)


async def _cancel_on_disconnect(receive: Receive, gen: Generation) -> None:
    """Set ``gen.cancel`` once the client of a (plain) request disconnects."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            gen.cancel.set()
            return


class FusedServer:
    """The model, its served name and the runner: what the endpoints share."""

    def __init__(self, model: MixtureOfThoughts, name: str, max_queue: int = 16) -> None:
        self.model, self.name = model, name
        self.runner = Runner(max_queue)
        self.experts = [e.name for e in model.experts]

    def request(self, raw: bytes) -> ChatRequest:
        """The validated request (RequestError / UnknownModelError otherwise)."""
        req = ChatRequest.parse(raw)
        if req.model != self.name:
            raise UnknownModelError(f"The model `{req.model}` does not exist; this server "
                                    f"serves `{self.name}`.", param="model")
        if (req.get("n") or 1) != 1:
            raise RequestError("Only one choice (n=1) is supported.", param="n")
        return req

    def generation(self, req: ChatRequest) -> Generation:
        return Generation(self.model, chat_messages(req), sampling_of(req), routing_text(req))

    def extension(self, gen: Generation) -> dict[str, Any]:
        return wire.extension(self.experts[gen.primary], [self.experts[i] for i in gen.active],
                              gen.peer_tokens)

    def usage(self, gen: Generation) -> dict[str, int]:
        return wire.usage(gen.prompt_tokens, gen.completion_tokens)

    async def body(self, job: Job, receive: Receive) -> dict[str, Any]:
        """The ``chat.completion`` of a plain request."""
        watch = asyncio.create_task(_cancel_on_disconnect(receive, job.gen))
        try:
            text = await job.text()
        finally:
            watch.cancel()
        gen = job.gen
        return wire.Reply(self.name).body(text, gen.finish_reason, self.usage(gen),
                                          self.extension(gen))

    async def stream(self, job: Job, req: ChatRequest) -> AsyncIterator[bytes]:
        """The chunks of a streamed request: the role (with the extension) before the first
        text, the text, the finish reason (with the extension again, complete), the usage
        when asked for, ``[DONE]``; a failure is an OpenAI error event before ``[DONE]``."""
        reply, gen = wire.Reply(self.name), job.gen
        role = {"role": "assistant", "content": ""}
        started = False
        try:
            async for delta in job.deltas():
                if not started:
                    started = True
                    yield wire.event(reply.chunk(role, ext=self.extension(gen)))
                yield wire.event(reply.chunk({"content": delta}))
            if not started:
                yield wire.event(reply.chunk(role, ext=self.extension(gen)))
            yield wire.event(reply.chunk({}, gen.finish_reason, ext=self.extension(gen)))
            if req.wants_usage:
                yield wire.event(reply.usage_chunk(self.usage(gen)))
        except GatewayError as exc:
            yield wire.event(exc.to_body())
        yield DONE

    def card(self) -> ModelCard:
        return ModelCard(id=self.name, coe={"kind": wire.MOT_KIND, "experts": self.experts})


def create_app(model: MixtureOfThoughts, name: str, max_queue: int = 16) -> FastAPI:
    """The ASGI app serving ``model`` as ``name`` (``app.state.fused``: its
    :class:`FusedServer`)."""
    srv = FusedServer(model, name, max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(srv.runner.shutdown)

    app = FastAPI(title="coe-gateway fused expert", lifespan=lifespan)
    install(app)
    app.state.fused = srv

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": srv.name, **srv.runner.stats()}

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[srv.card()])

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        req = srv.request(await request.body())
        job = srv.runner.submit(srv.generation(req))
        if req.stream:
            return StreamingResponse(srv.stream(job, req), media_type="text/event-stream",
                                     headers={"cache-control": "no-cache"})
        return JSONResponse(await srv.body(job, request.receive))

    return app


def configure_cpus(cpus: str | None, threads: int | None) -> None:
    """Pin this process to ``cpus`` (a Linux CPU list, ``0-3,6``) and run torch on
    ``threads`` threads (default: one per pinned core; neither given: torch's default)."""
    import torch

    if cpus:
        cores = cpu_list(cpus)
        os.sched_setaffinity(0, cores)
        threads = threads or len(cores)
    if threads:
        torch.set_num_threads(threads)


def warm_up(model: MixtureOfThoughts) -> None:
    """Load the router's sentence encoder now, not on the first request."""
    from coe_gateway.routers.embedding import get_encoder

    get_encoder(model.cfg.encoder).encode(["warm-up"])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from coe_gateway.config import DEFAULT_MODELS_DIR

    p = argparse.ArgumentParser(prog="python -m coe_gateway.fusion.server",
                                description="Serve one fused (MoT) model, OpenAI-compatible.")
    p.add_argument("--model", type=Path, required=True,
                   help="the fused model's directory (mot.json + mot.safetensors)")
    p.add_argument("--served-model-name", help="the model name it answers to (default: "
                   "the directory's name)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--models-dir", default=DEFAULT_MODELS_DIR,
                   help="where the frozen experts' checkpoints are (%(default)s)")
    p.add_argument("--cpus", help="pin to these cores (a Linux CPU list: 0-3,6)")
    p.add_argument("--threads", type=int, help="torch threads (default: one per --cpus core)")
    p.add_argument("--max-queue", type=int, default=16,
                   help="requests that may wait behind the running one (%(default)s)")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"])
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Load the model and serve it until stopped."""
    import uvicorn

    from coe_gateway.config import expand
    from coe_gateway.fusion.store import load

    args = parse_args(argv)
    configure_cpus(args.cpus, args.threads)
    model = load(args.model, Path(expand(args.models_dir)))
    warm_up(model)
    app = create_app(model, args.served_model_name or args.model.name, args.max_queue)
    # on SIGTERM, streams still open after 5 s are cancelled (and so their generations)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                access_log=False, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
