"""Load test of ``llmtts serve`` on loopback: N concurrent streaming clients (closed loop, mixed text lengths)
against a batching server (``--max-batch 16``) and a one-request-at-a-time server (``--max-batch 1``), same
model, same requests (same seeds, so the same audio and work), measured in the same run.

    python benchmarks/serve.py                          # tiny random-weight model, 1 / 4 / 16 clients
    python benchmarks/serve.py --model soprano --max-tokens 48 --requests 1   # soprano-80m-sized random weights

Reports requests/s, audio-seconds/s, p50/p95 time to first audio (first streamed byte) and total latency, and
the throughput ratio batched / one-at-a-time at each concurrency. Bounded: ``--requests`` per client, a per-run
deadline, loopback only. Random weights: the audio is noise, but every code path of a real model runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "infer"))
sys.path.insert(0, str(ROOT / "tests" / "serve"))

TEXTS = [  # short, medium, long (1, 2 and 3 sentences)
    "Hello there.",
    "The quick brown fox jumps over the lazy dog, while the band plays on.",
    "A longer request arrives. It has a few sentences, each of them generated in turn. The last one ends here.",
]


def write_exports(model: str, root: Path) -> tuple[Path, Path]:
    if model == "tiny":
        from infer_helpers import write_tiny_exports

        return write_tiny_exports(root)
    import torch

    from llmtts.config import load_config
    from llmtts.decoder.config import DecoderConfig
    from llmtts.decoder.export import save_decoder
    from llmtts.decoder.model import HiddenDecoder
    from llmtts.llm.config import LLMConfig
    from llmtts.llm.export import save_export
    from llmtts.llm.model import build_model
    from llmtts.llm.tokenizer import DEFAULT_SYMBOLS, build_frontend
    from llmtts.llm.vocab import Vocab

    torch.manual_seed(0)  # as benchmarks/inference.py builds the soprano-sized model
    lcfg = load_config(LLMConfig, str(ROOT / "configs/llm/soprano-80m.yaml"))
    vocab = Vocab(n_audio=8000, n_text=len(DEFAULT_SYMBOLS), text_symbols=DEFAULT_SYMBOLS, size=8192)
    save_export(build_model(lcfg.model, vocab.size).eval(), vocab, build_frontend("chars", "english"),
                root / "llm" / "export")
    dcfg = load_config(DecoderConfig, str(ROOT / "configs/decoder/soprano.yaml"))
    save_decoder(HiddenDecoder(dcfg.model).eval(), root / "dec" / "export")
    return root / "llm", root / "dec"


def client(url: str, cid: int, n: int, out: list, deadline: float) -> None:
    with httpx.Client(timeout=600) as http:
        for i in range(n):
            if time.monotonic() > deadline:
                return
            text = TEXTS[(cid + i) % len(TEXTS)]
            body = {"input": text, "stream": True, "response_format": "pcm", "seed": 1000 * cid + i}
            t0 = time.perf_counter()
            first, size = None, 0
            with http.stream("POST", url + "/v1/audio/speech", json=body) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.read()[:200]!r}")
                sr = int(r.headers["x-sample-rate"])
                for piece in r.iter_bytes():
                    if first is None and piece:
                        first = time.perf_counter() - t0
                    size += len(piece)
            out.append({"ttfa": first, "latency": time.perf_counter() - t0, "audio_s": size / 2 / sr})


def load(url: str, clients: int, requests: int, budget_s: float) -> dict:
    out: list = []
    deadline = time.monotonic() + budget_s
    threads = [threading.Thread(target=client, args=(url, c, requests, out, deadline)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0

    def pct(key, q):
        xs = sorted(r[key] for r in out)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    audio = sum(r["audio_s"] for r in out)
    return {"clients": clients, "requests": len(out), "wall_s": wall, "req_per_s": len(out) / wall,
            "audio_s_per_s": audio / wall, "ttfa_p50": statistics.median(r["ttfa"] for r in out),
            "ttfa_p95": pct("ttfa", 0.95), "latency_p50": statistics.median(r["latency"] for r in out),
            "latency_p95": pct("latency", 0.95), "audio_s": audio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["tiny", "soprano"], default="tiny")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=3, help="requests per client")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=None, help="server cap on tokens per sentence")
    ap.add_argument("--threads", type=int, default=1, help="server torch threads")
    ap.add_argument("--budget", type=float, default=300, help="seconds per load run at most")
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from serve_helpers import ServerProcess

    root = Path(tempfile.mkdtemp(prefix="serve_bench_"))
    exports = write_exports(args.model, root)
    extra = ["--threads", str(args.threads), "--max-queue", "256"]
    if args.max_tokens:
        extra += ["--max-tokens", str(args.max_tokens)]
    results = []
    for batch in (args.max_batch, 1):
        srv = ServerProcess(*exports, "--max-batch", str(batch), *extra, timeout=600)
        try:
            for n in [int(x) for x in args.clients.split(",")]:
                r = load(srv.url, n, args.requests, args.budget)
                r["max_batch"] = batch
                results.append(r)
                print(f"max_batch={batch:2d} clients={n:2d}: {r['requests']} req in {r['wall_s']:.1f} s, "
                      f"{r['req_per_s']:.2f} req/s, {r['audio_s_per_s']:.1f} audio-s/s, ttfa p50/p95 "
                      f"{r['ttfa_p50'] * 1000:.0f}/{r['ttfa_p95'] * 1000:.0f} ms, latency p50/p95 "
                      f"{r['latency_p50']:.2f}/{r['latency_p95']:.2f} s", flush=True)
        finally:
            srv.terminate()
    print(f"\n{args.model} model, server threads {args.threads}: batched (max_batch {args.max_batch}) vs "
          "one-at-a-time throughput (audio-s/s)")
    for n in [int(x) for x in args.clients.split(",")]:
        b = next(r for r in results if r["clients"] == n and r["max_batch"] == args.max_batch)
        s = next(r for r in results if r["clients"] == n and r["max_batch"] == 1)
        print(f"  {n:2d} clients: {b['audio_s_per_s']:.1f} vs {s['audio_s_per_s']:.1f} = "
              f"{b['audio_s_per_s'] / s['audio_s_per_s']:.2f}x (req/s {b['req_per_s'] / s['req_per_s']:.2f}x)")
    if args.json:
        from llmtts.io import write_json_atomic

        write_json_atomic(args.json, {"model": args.model, "args": vars(args), "results": results}, indent=1)


if __name__ == "__main__":
    main()
