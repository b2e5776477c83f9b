"""Shard reader throughput from http:// and s3:// (loopback servers) vs the same folder read locally.

    python benchmarks/remote_read.py [--shards 8] [--per-shard 100] [--seconds 1.0] [--workers 0]

Writes token-like shards (1 s of 16 kHz FLAC + codes per sample) to a temp dir, serves it with Python's
threading http.server and moto's S3 server (``pip install 'moto[server]'``, both in this process) and
reads one epoch with ``ShardLoader`` (codes only, then audio decoded). The baseline is the local read in
the same run; ratios < 1 mean slower than local. Loopback numbers bound the reader's own overhead, not a
real network.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np

from llmtts.audio import encode_flac
from llmtts.data.hidden_format import HiddenFormat
from llmtts.data.reader import ShardLoader
from llmtts.data.shards import ShardWriter, build_index, shard_name, write_index


def write_shards(root: Path, shards: int, per_shard: int, seconds: float, kind: str = "tokens",
                 sample_rate: int = 16000, samples_per_token: int = 1024, hidden_size: int = 512,
                 hidden_format: HiddenFormat | None = None) -> int:
    """Shards of ``kind`` (audio: flac + json; tokens: + codes.npy; hidden: + the states in ``hidden_format``)
    of ``seconds``-long samples, as the real stages lay them out; returns the bytes written."""
    rng, summaries, total = np.random.default_rng(0), [], 0
    fmt = hidden_format or HiddenFormat()
    n_tok = int(seconds * sample_rate / samples_per_token)
    for s in range(shards):
        rel = f"train/{shard_name(s)}"
        with ShardWriter(root / rel, rel_path=rel, split="train") as w:
            for i in range(per_shard):
                n = n_tok * samples_per_token
                wav = (0.2 * np.sin(np.arange(n) * 0.03) + 0.01 * rng.standard_normal(n)).astype(np.float32)
                members = {"flac": encode_flac(wav, sample_rate),
                           "json": {"text": "x", "duration_s": n / sample_rate, "sample_rate": sample_rate}}
                if kind in ("tokens", "hidden"):
                    members["codes.npy"] = rng.integers(0, 1000, n_tok).astype(np.int16)
                if kind == "hidden":  # LLM-like: unit-RMS rows (post-norm) with a few large channels
                    h = rng.standard_normal((n_tok, hidden_size)).astype(np.float32)
                    h[:, :4] *= 20
                    members[fmt.member] = fmt.encode(h)
                w.write(f"k{s:03d}_{i:04d}", members)
        summaries.append(w.summary)
        total += (root / rel).stat().st_size
    extra = {"hidden_size": hidden_size, **fmt.index_fields()} if kind == "hidden" else {}
    write_index(root, build_index(kind, summaries, sample_rate=sample_rate, samples_per_token=samples_per_token,
                                  **extra))
    return total


@contextlib.contextmanager
def loopback_servers() -> Iterator[callable]:
    """Python's threading http.server and moto's S3 server on 127.0.0.1 (both in this process). Yields
    ``publish(root, name) -> {"local": ..., "http": ..., "s3": ...}`` that serves/uploads a shard folder."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://{host}:{port}")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bench")
    servers = []
    handler = type("Q", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})

    def publish(root: Path, name: str) -> dict[str, str]:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        for p in sorted(q for q in root.rglob("*") if q.is_file()):
            s3.upload_file(str(p), "bench", f"{name}/{p.relative_to(root).as_posix()}")
        return {"local": str(root), "http": f"http://127.0.0.1:{httpd.server_address[1]}", "s3": f"s3://bench/{name}"}

    try:
        yield publish
    finally:
        for httpd in servers:
            httpd.shutdown()
        moto.stop()


def read_epoch(source: str, fields: list[str], workers: int, steady: bool = False,
               batch: int = 64, transform=None) -> tuple[float, int]:
    """(wall seconds, samples) of one unshuffled epoch of ``ShardLoader`` with ``workers`` DataLoader workers.
    ``steady``: the clock starts when the first batch arrives and that batch is not counted, so worker
    start-up (process spawn, imports: once per training run) is left out of the rate."""
    ld = ShardLoader(source, "train", 0, 1, length_fn=lambda s: 1, fields=fields, batch_budget=batch,
                     max_batch_size=batch, shuffle_buffer=1, num_workers=workers, endless=False, shuffle=False,
                     bucket_size=batch, transform=transform)
    t0, n = time.perf_counter(), 0
    for i, b in enumerate(ld):
        if steady and i == 0:
            t0 = time.perf_counter()
            continue
        n += len(b)
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--per-shard", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp, loopback_servers() as publish:
        root = Path(tmp) / "shards"
        nbytes = write_shards(root, args.shards, args.per_shard, args.seconds)
        sources = publish(root, "shards")
        print(f"{args.shards} shards, {args.shards * args.per_shard} samples, {nbytes / 1e6:.1f} MB, "
              f"workers={args.workers}")
        for fields in (["codes"], ["audio"]):
            base = None
            for name, src in sources.items():
                wall, n = read_epoch(src, fields, args.workers)
                base = base or wall
                print(f"fields={fields[0]:5s} {name:5s} {n / wall:8.0f} samples/s {nbytes / wall / 1e6:7.1f} MB/s "
                      f"({base / wall:.2f}x local)")


if __name__ == "__main__":
    main()
