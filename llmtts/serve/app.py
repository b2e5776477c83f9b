"""The FastAPI application: routes, limits, auth and OpenAI-style errors around one ``Scheduler``.

``create_app(tts, cfg)`` takes a loaded ``TTS``; the worker thread and a warm-up request start in the lifespan
(``/health`` says 503 until the warm-up finished), and stop after uvicorn has drained in-flight requests.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from llmtts.errors import UserError
from llmtts.serve import formats
from llmtts.serve.metrics import Metrics
from llmtts.serve.request import ApiError, SpeechRequest, parse_speech
from llmtts.serve.scheduler import Job, Scheduler

log = logging.getLogger(__name__)

# OpenAI's stock voices: accepted as "this model's default speaker", so OpenAI clients work unchanged.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
STATIC = Path(__file__).parent / "static"
DISCONNECT_POLL_S = 0.5  # how often a whole (non-streamed) request checks that its client is still there
DRAIN_MARGIN_S = 1.0  # a whole request still running this long before the graceful timeout ends gets a JSON 503


@dataclass
class ServeConfig:
    model_name: str = "llmtts"
    max_batch: int = 8
    max_queue: int = 64
    max_chars: int = 4000
    max_body_bytes: int = 65536
    timeout_s: float = 300.0  # per request, queue time included
    max_tokens: int | None = None  # per sentence; None = the export's default
    api_key: str | None = None
    retry_after_s: int = 1
    warmup: bool = True


class State:
    def __init__(self, tts, cfg: ServeConfig):
        self.tts, self.cfg = tts, cfg
        self.metrics = Metrics()
        self.scheduler = Scheduler(tts, cfg.max_batch, cfg.max_queue, self.metrics)
        self.ready = False
        self.draining = False
        self.drain_deadline = math.inf  # set on SIGTERM: when the graceful shutdown gives up on open requests

    def warm_up(self) -> None:
        """One short request through the whole path (allocates buffers, first-call kernel set-up)."""
        try:
            done = threading.Event()
            opts = self.tts.resolve_options(seed=0, max_tokens=max(8, self.tts.options.min_tokens))
            job = Job(self.tts.prepare("Warm up.", opts), opts, stream=False,
                      emit=lambda kind, _: kind in ("done", "error") and done.set(), deadline=time.monotonic() + 600)
            if self.cfg.warmup and self.scheduler.submit(job):
                done.wait(600)
        except Exception as exc:  # health says why instead of "loading" forever
            log.exception("warm-up failed")
            self.scheduler.failed = f"warm-up failed: {type(exc).__name__}: {exc}"
        self.ready = self.scheduler.failed is None
        log.info("ready: %s", self.ready)


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def create_app(tts, cfg: ServeConfig) -> FastAPI:
    from contextlib import asynccontextmanager

    state = State(tts, cfg)

    @asynccontextmanager
    async def lifespan(app):
        state.scheduler.start()
        threading.Thread(target=state.warm_up, name="llmtts-warmup", daemon=True).start()
        yield
        state.draining = True
        state.scheduler.stop()

    app = FastAPI(title="llmtts speech server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.llmtts = state

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return _error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        return _error(ApiError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None))

    @app.exception_handler(Exception)
    async def _internal(request, exc):
        log.exception("unhandled error on %s", request.url.path)
        return _error(ApiError(500, "internal server error (see the server log)", type="server_error"))

    def check_auth(request: Request) -> None:
        if cfg.api_key is None:
            return
        got = request.headers.get("authorization", "")
        scheme, _, token = got.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), cfg.api_key.encode()):
            raise ApiError(401, "missing or invalid API key (Authorization: Bearer KEY)", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    async def health():
        if state.scheduler.failed:
            return JSONResponse({"status": "failed", "error": state.scheduler.failed}, status_code=503)
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if not state.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ok", "queue": state.scheduler.queue_depth(), "active": state.scheduler.active(),
                "auth": cfg.api_key is not None}

    @app.get("/metrics")
    async def metrics(request: Request):
        check_auth(request)
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models(request: Request):
        check_auth(request)
        return {"object": "list", "data": [{"id": cfg.model_name, "object": "model", "owned_by": "llmtts",
                                            "voices": voices(), "sample_rate": tts.sample_rate}]}

    @app.get("/v1/voices")
    async def list_voices(request: Request):
        check_auth(request)
        return {"voices": voices(), "default": voices()[0] if voices() else None}

    def voices() -> list[str]:
        return list(tts.vocab.speakers) or ["default"]

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        t0 = time.monotonic()
        try:
            return await _speech(request, t0)
        except ApiError as exc:
            state.metrics.requests.labels(status=str(exc.status)).inc()
            raise

    async def _speech(request: Request, t0: float):
        check_auth(request)
        if state.draining or state.scheduler.failed or not state.ready:
            raise ApiError(503, "the server is " + ("shutting down" if state.draining else "not ready"),
                           type="server_error", code="unavailable", headers={"Retry-After": "5"})
        req = parse_speech(await _read_body(request, cfg.max_body_bytes), cfg.max_chars)
        job, queue = _make_job(req, asyncio.get_running_loop())
        if not state.scheduler.submit(job):
            raise ApiError(429, f"too many requests: {cfg.max_queue} are already waiting", type="rate_limit_error",
                           code="queue_full", headers={"Retry-After": str(cfg.retry_after_s)})
        if req.stream:
            return _stream(req, job, queue, t0)
        return await _whole(req, job, queue, request, t0)

    def _make_job(req: SpeechRequest, loop) -> tuple[Job, asyncio.Queue]:
        speaker = None
        if req.voice is not None and req.voice not in OPENAI_VOICES and not (req.voice == "default"):
            speaker = req.voice
        try:
            o = tts.resolve_options(seed=req.seed, temperature=req.temperature, top_p=req.top_p, speaker=speaker,
                                    max_text_chars=cfg.max_chars, max_tokens=cfg.max_tokens)
            prompts = tts.prepare(req.input, o)
        except UserError as exc:
            param = "voice" if "speaker" in str(exc) else "input" if "text" in str(exc) else None
            raise ApiError(400, str(exc), param, "invalid_value") from None
        queue: asyncio.Queue = asyncio.Queue()

        def emit(kind, payload):
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, payload))
            except RuntimeError:  # the loop is gone (server stopped): nobody is listening
                pass

        return Job(prompts, o, req.stream, emit, time.monotonic() + cfg.timeout_s), queue

    async def _whole(req, job, queue, request, t0):
        chunks = []
        checked = time.monotonic()
        try:
            while True:
                try:
                    kind, payload = await asyncio.wait_for(queue.get(), DISCONNECT_POLL_S)
                except asyncio.TimeoutError:
                    kind, payload = None, None
                # Checked between chunks too: a request whose audio keeps coming would otherwise never notice that
                # its client left, decode to the end and count as served.
                if kind is None or time.monotonic() - checked > DISCONNECT_POLL_S:
                    checked = time.monotonic()
                    if await request.is_disconnected():
                        job.cancel()
                        state.metrics.requests.labels(status="499").inc()
                        return Response(status_code=499)
                if time.monotonic() > state.drain_deadline - DRAIN_MARGIN_S:
                    # uvicorn is about to cancel this request (a plain-text 500); answer it ourselves, in JSON
                    raise ApiError(503, "the server is shutting down; retry", type="server_error", code="unavailable",
                                   headers={"Retry-After": "5"})
                if kind is None:
                    if time.monotonic() > job.deadline + 1.0:  # still queued behind long jobs
                        raise ApiError(504, "generation timeout", type="server_error", code="timeout")
                    continue
                if kind == "audio":
                    chunks.append(payload)
                elif kind == "done":
                    break
                else:
                    status = 504 if payload == "timeout" else 500
                    raise ApiError(status, f"generation {payload}", type="server_error", code=str(payload))
        finally:
            job.cancel()  # no-op when done; frees the row when we leave early
        wav = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        body = formats.encode(wav, tts.sample_rate, req.response_format)
        state.metrics.requests.labels(status="200").inc()
        state.metrics.latency.observe(time.monotonic() - t0)
        return Response(body, media_type=formats.MEDIA_TYPES[req.response_format],
                        headers={"X-Sample-Rate": str(tts.sample_rate)})

    def _stream(req, job, queue, t0):
        sse = req.stream_format == "sse"

        async def body():
            try:
                if not sse and req.response_format == "wav":
                    yield formats.wav_header(tts.sample_rate)
                while True:
                    kind, payload = await queue.get()
                    if kind == "audio":
                        yield formats.sse_delta(payload) if sse else formats.pcm16(payload)
                    elif kind == "done":
                        if sse:
                            yield formats.sse_event({"type": "speech.audio.done", "usage": payload})
                        state.metrics.latency.observe(time.monotonic() - t0)
                        return
                    else:  # headers are sent: the only signal left is ending the stream early (docs/serve.md)
                        if sse:
                            yield formats.sse_event({"type": "error", "error": {"message": f"generation {payload}",
                                                                                "code": str(payload)}})
                        return
            finally:
                job.cancel()  # a client that went away (or any early exit) frees its row at the next step

        state.metrics.requests.labels(status="200").inc()
        media = "text/event-stream" if sse else formats.MEDIA_TYPES[req.response_format]
        return StreamingResponse(body(), media_type=media, headers={"X-Sample-Rate": str(tts.sample_rate),
                                                                    "Cache-Control": "no-store"})

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes (413) by its Content-Length or while reading it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body of {declared} bytes is over this server's limit of {limit}", code="body_too_large")
    got = bytearray()
    try:
        async for piece in request.stream():
            got += piece
            if len(got) > limit:
                raise ApiError(413, f"body is over this server's limit of {limit} bytes", code="body_too_large")
    except ClientDisconnect:  # the client left mid-body: nobody reads an answer; one log line, not two tracebacks
        log.info("client disconnected while sending the request body (%d bytes received)", len(got))
        raise ApiError(499, "client disconnected", code="client_disconnected") from None
    return bytes(got)
