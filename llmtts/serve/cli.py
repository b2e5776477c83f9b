"""``llmtts serve``: load a model, then serve it over HTTP (OpenAI ``/v1/audio/speech``, a web page, metrics)."""
from __future__ import annotations

import argparse
import logging
import math
import signal
import socket
import time
from pathlib import Path

from llmtts.cli_paths import input_path
from llmtts.errors import UserError
from llmtts.optional import missing_extra, require

log = logging.getLogger(__name__)


def configure(p: argparse.ArgumentParser) -> None:
    input_path(p, "--llm-path", required=True, help="LLM run directory or its export/")
    input_path(p, "--decoder-path", required=True, help="decoder run directory or its export/")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback; 0.0.0.0 = every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0 = any free port, printed at start)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "int8", "int4", "auto"],
                   help="LLM weights (see synthesize)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for generation (0 = torch default)")
    p.add_argument("--max-batch", type=int, default=8, help="requests generated together (rows per decode step)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting for a row; more get 429")
    p.add_argument("--max-chars", type=int, default=4000, help="longest input text (characters)")
    p.add_argument("--max-body-bytes", type=int, default=65536, help="largest request body; more get 413")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="cap on audio tokens per sentence (default: the export's inference.json, else 512)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request, queueing included")
    input_path(p, "--api-key-file", default=None,
                   help="file whose first line is the API key; clients then send 'Authorization: Bearer KEY'")
    p.add_argument("--model-name", default="llmtts", help="model id listed by /v1/models")
    p.add_argument("--graceful-timeout", type=float, default=None,
                   help="on SIGTERM, seconds to wait for in-flight requests (default: --timeout)")
    p.set_defaults(func=run)


def _check(args) -> None:
    for name in ("max_batch", "max_queue", "max_chars", "max_body_bytes"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {args.port}")
    if not 0 < args.timeout < math.inf:
        raise UserError(f"--timeout must be > 0 and finite, got {args.timeout}")
    if args.graceful_timeout is not None and not 0 <= args.graceful_timeout < math.inf:
        raise UserError(f"--graceful-timeout must be >= 0 and finite, got {args.graceful_timeout}")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise UserError(f"--max-tokens must be >= 1, got {args.max_tokens}")
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0, got {args.threads}")


def read_api_key(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        key = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--api-key-file {path}: cannot read it ({exc.__class__.__name__})") from None
    if not key or not key[0].strip():  # the key is the first line, never a later one a comment left there
        raise UserError(f"--api-key-file {path}: the first line is empty (put the key on the first line)")
    return key[0].strip()


def check_port_free(host: str, port: int) -> None:
    """Before the model loads: a port in use is one line, not uvicorn's message and its exit code 3 a minute later.
    (Another process could still take it in between; uvicorn's own failure is then reported the same way.)"""
    if port == 0:
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is not "in use"
            s.bind((host, port))
    except OSError as exc:
        raise UserError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def run(args) -> int:
    _check(args)
    api_key = read_api_key(args.api_key_file)
    check_port_free(args.host, args.port)
    uvicorn = require("uvicorn", "llmtts serve")
    try:
        from llmtts.serve.app import ServeConfig, create_app
    except ModuleNotFoundError as exc:  # fastapi, prometheus_client
        raise missing_extra(exc, "llmtts serve") or exc from None
    import torch

    from llmtts.infer.tts import TTS

    if args.threads:
        torch.set_num_threads(args.threads)
    tts = TTS.load(args.llm_path, args.decoder_path, device=args.device, dtype=args.dtype)
    cfg = ServeConfig(model_name=args.model_name, max_batch=args.max_batch, max_queue=args.max_queue,
                      max_chars=args.max_chars, max_body_bytes=args.max_body_bytes, timeout_s=args.timeout,
                      api_key=api_key, max_tokens=args.max_tokens)
    app = create_app(tts, cfg)
    state = app.state.llmtts
    graceful = args.graceful_timeout if args.graceful_timeout is not None else args.timeout

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # SIGTERM/SIGINT: health says draining while requests finish
            state.draining = True
            state.drain_deadline = min(state.drain_deadline, time.monotonic() + graceful)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info", access_log=False,
                            timeout_graceful_shutdown=graceful, lifespan="on")
    server = Server(config)
    # uvicorn re-raises the signal it handled once it has shut down (for embedding); with the default handler
    # that kills us with -15 after a clean drain. A no-op handler there makes a drained SIGTERM exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    except SystemExit:  # uvicorn exits 3 when it cannot start (the port was taken after our check)
        pass
    if getattr(server, "started", False) is False:
        raise UserError(f"could not serve on {args.host}:{args.port} (see the log above: port in use?)")
    return 0
