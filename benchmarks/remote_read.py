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
import functools
import logging
import os
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from llmtts.audio import encode_flac
from llmtts.data.reader import ShardLoader
from llmtts.data.shards import ShardWriter, build_index, shard_name, write_index


def write_shards(root: Path, shards: int, per_shard: int, seconds: float) -> int:
    rng, summaries, total = np.random.default_rng(0), [], 0
    for s in range(shards):
        rel = f"train/{shard_name(s)}"
        with ShardWriter(root / rel, rel_path=rel, split="train") as w:
            for i in range(per_shard):
                n = int(16000 * seconds)
                wav = (0.2 * np.sin(np.arange(n) * 0.03) + 0.01 * rng.standard_normal(n)).astype(np.float32)
                w.write(f"k{s:03d}_{i:04d}", {"flac": encode_flac(wav, 16000), "codes.npy":
                        rng.integers(0, 1000, int(15.625 * seconds)).astype(np.int16),
                        "json": {"text": "x", "duration_s": seconds, "sample_rate": 16000}})
        summaries.append(w.summary)
        total += (root / rel).stat().st_size
    write_index(root, build_index("tokens", summaries, sample_rate=16000))
    return total


def read_epoch(source: str, fields: list[str], workers: int) -> tuple[float, int]:
    ld = ShardLoader(source, "train", 0, 1, length_fn=lambda s: 1, fields=fields, batch_budget=64,
                     max_batch_size=64, shuffle_buffer=1, num_workers=workers, endless=False, shuffle=False)
    t0 = time.perf_counter()
    n = sum(len(b) for b in ld)
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--per-shard", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shards"
        nbytes = write_shards(root, args.shards, args.per_shard, args.seconds)
        handler = type("Q", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        host, port = moto.get_host_and_port()
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                          AWS_ENDPOINT_URL=f"http://{host}:{port}")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench")
        for p in sorted(q for q in root.rglob("*") if q.is_file()):
            s3.upload_file(str(p), "bench", f"shards/{p.relative_to(root).as_posix()}")
        sources = {"local": str(root), "http": f"http://127.0.0.1:{httpd.server_address[1]}",
                   "s3": "s3://bench/shards"}
        print(f"{args.shards} shards, {args.shards * args.per_shard} samples, {nbytes / 1e6:.1f} MB, "
              f"workers={args.workers}")
        for fields in (["codes"], ["audio"]):
            base = None
            for name, src in sources.items():
                wall, n = read_epoch(src, fields, args.workers)
                base = base or wall
                print(f"fields={fields[0]:5s} {name:5s} {n / wall:8.0f} samples/s {nbytes / wall / 1e6:7.1f} MB/s "
                      f"({base / wall:.2f}x local)")
        httpd.shutdown()
        moto.stop()


if __name__ == "__main__":
    main()
