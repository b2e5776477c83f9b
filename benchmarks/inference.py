"""Inference speed of the Soprano-sized model: soprano-80m LLM + soprano decoder (random weights), a fixed number
of generated tokens per sentence ([stop] masked), against a naive baseline measured in the same run.

    python benchmarks/inference.py                      # 512 tokens, batch 1 and 8, fp32 + int8 (+ bf16)
    python benchmarks/inference.py --tokens 128 --quick # a fast smoke run
    python benchmarks/inference.py --device cuda --dtypes fp32,bf16 --batch 32   # a GPU (scripts/gpu-smoke.sh runs it)

Reports x-real-time (seconds of audio per second of wall time), ms per generated token, and the streaming
first-chunk latency. Baseline: the same model, no KV cache (the whole sequence recomputed at every step).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import platform
import statistics
import time

import torch

from llmtts.config import load_config
from llmtts.decoder.config import DecoderConfig
from llmtts.decoder.model import HiddenDecoder
from llmtts.errors import UserError
from llmtts.infer.tts import TTS, cast_llm, check_device
from llmtts.llm.config import LLMConfig
from llmtts.llm.model import build_model
from llmtts.llm.tokenizer import DEFAULT_SYMBOLS, build_frontend
from llmtts.llm.vocab import Vocab

logging.getLogger("llmtts.infer.tts").setLevel(logging.ERROR)  # forced lengths: no runaway warnings
TEXT = "the quick brown fox jumps over the lazy dog while the band plays on."


def build(dtype: str, decoder_config: str = "configs/decoder/soprano.yaml", device: str = "cpu") -> TTS:
    torch.manual_seed(0)
    lcfg = load_config(LLMConfig, "configs/llm/soprano-80m.yaml")
    vocab = Vocab(n_audio=8000, n_text=len(DEFAULT_SYMBOLS), text_symbols=DEFAULT_SYMBOLS, size=8192)
    llm = build_model(lcfg.model, vocab.size).eval().to(device)
    dcfg = load_config(DecoderConfig, decoder_config)
    decoder = HiddenDecoder(dcfg.model).eval().to(device)
    cast = cast_llm(copy.deepcopy(llm) if dtype != "fp32" else llm, dtype)
    tts = TTS(cast, vocab, build_frontend("chars", "english"), decoder, dtype=dtype)
    tts.check_against(llm)  # the kernel canary, as TTS.load runs it: a broken format is refused, never timed
    return tts


def forced(tokens: int) -> dict:
    # min_tokens masks [stop]; tokens_per_text_id lifts the text-length guard so every sentence has `tokens`.
    return dict(seed=0, max_tokens=tokens, min_tokens=tokens, tokens_per_text_id=1000.0, max_chars=1000)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def offline(tts: TTS, texts: list[str], tokens: int, **kw) -> dict:
    res, wall = timed(lambda: tts.synthesize_batch(texts, batch_size=len(texts), **forced(tokens), **kw))
    audio_s = sum(len(w) for w, _ in res) / tts.sample_rate
    return {"x_rt": audio_s / wall, "ms_per_token": wall / tokens * 1000, "tokens_per_s": tokens * len(texts) / wall,
            "audio_s": audio_s, "wall_s": wall}


def naive(tts: TTS, tokens: int) -> dict:
    """No KV cache: every step recomputes the whole sequence (the textbook loop without a cache)."""
    from llmtts.infer import generate as g

    orig = g.generate_steps

    def no_cache(*a, **k):
        k["use_cache"] = False
        return orig(*a, **k)

    g.generate_steps = no_cache
    try:
        return offline(tts, [TEXT], tokens)
    finally:
        g.generate_steps = orig


def stream(tts: TTS, tokens: int, lookahead: int | None = None, reps: int = 3) -> dict:
    """Streamed x-real-time over ``tokens`` tokens, and the first chunk's latency: the median of ``reps`` calls
    stopped at their first chunk (one sample swings by tens of ms on a shared VM)."""
    t = time.perf_counter()
    n = 0
    for chunk in tts.stream(TEXT, lookahead=lookahead, **forced(tokens)):
        n += len(chunk)
    wall = time.perf_counter() - t
    firsts = []
    for _ in range(reps):
        gen = tts.stream(TEXT, lookahead=lookahead, **forced(tokens))
        next(gen)
        gen.close()
        firsts.append(tts.last_stats["first_chunk_s"] * 1000)
    return {"x_rt": n / tts.sample_rate / wall, "first_chunk_ms": statistics.median(firsts),
            "first_chunk_ms_all": firsts, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=512, help="generated tokens per sentence (512 = 32.8 s)")
    ap.add_argument("--naive-tokens", type=int, default=64,
                    help="tokens for the no-cache baseline (quadratic; compared with ours at the same length)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--dtypes", default="fp32,int8", help="LLM weight formats to measure")
    ap.add_argument("--batch", type=int, default=8, help="sentences generated together (a GPU: 32)")
    ap.add_argument("--device", default="cpu", help="torch device (cuda: use --dtypes fp32,bf16,int8)")
    ap.add_argument("--quick", action="store_true", help="skip batch and bf16 runs")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--decoder-config", default="configs/decoder/soprano.yaml",
                    help="decoder shapes (configs/decoder/soprano-stream.yaml: causal, 1 token of right context)")
    ap.add_argument("--lookahead", type=int, default=2,
                    help="also stream with this smaller right context (approximate chunk edges; -1 = skip)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    check_device(args.device)
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.processor()
    from llmtts.infer.graphed_decode import cuda_graphs_enabled

    graphs = cuda_graphs_enabled(torch.device(args.device))
    if args.device.startswith("cuda"):
        where += f", CUDA graphs {'on' if graphs else 'off (LLMTTS_CUDA_GRAPHS=0)'}"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other processes share these cores); "
          f"soprano-80m LLM + {args.decoder_config} decoder (random weights, context (left, right) "
          f"{HiddenDecoder(load_config(DecoderConfig, args.decoder_config).model).context} tokens), "
          f"{args.tokens} tokens/sentence")
    results: dict = {"threads": torch.get_num_threads(), "tokens": args.tokens, "device": where, "cuda_graphs": graphs}

    base = build("fp32", args.decoder_config, args.device)
    offline(base, [TEXT], 8)  # warm-up (allocator, oneDNN kernels)
    results["naive_fp32_b1"] = nv = naive(base, args.naive_tokens)
    results["cached_fp32_b1_short"] = cs = offline(base, [TEXT], args.naive_tokens)
    print(f"[{args.naive_tokens} tokens] naive no-cache fp32: {nv['x_rt']:.2f}x RT ({nv['ms_per_token']:.1f} ms/token)"
          f" | ours fp32: {cs['x_rt']:.2f}x RT ({cs['ms_per_token']:.1f} ms/token) -> {cs['x_rt'] / nv['x_rt']:.2f}x")
    dec_in = torch.randn(args.tokens, 512)
    _, dec_wall = timed(lambda: base.decode(dec_in))
    results["decoder_alone_x_rt"] = args.tokens * 2048 / 32000 / dec_wall
    print(f"decoder alone: {results['decoder_alone_x_rt']:.1f}x RT")

    dtypes = [d for d in args.dtypes.split(",") if d]
    timed_dtypes = []
    for dtype in dtypes:
        try:
            tts = base if dtype == "fp32" else build(dtype, args.decoder_config, args.device)
        except UserError as e:
            results[f"{dtype}_refused"] = str(e)
            print(f"[{args.tokens} tokens] ours {dtype}: not timed: {e}", flush=True)
            continue
        timed_dtypes.append(dtype)
        if tts.canary is not None:
            results[f"{dtype}_canary"] = dataclasses.asdict(tts.canary)
        offline(tts, [TEXT], 8)
        r1 = offline(tts, [TEXT], args.tokens)
        st = stream(tts, args.tokens)
        results[f"{dtype}_b1"], results[f"{dtype}_stream_b1"] = r1, st
        line = (f"[{args.tokens} tokens] ours {dtype} batch 1: {r1['x_rt']:.2f}x RT ({r1['ms_per_token']:.1f} ms/token)"
                f" | stream: {st['x_rt']:.2f}x RT ({st['x_rt'] / r1['x_rt']:.2f} of offline), "
                f"first chunk {st['first_chunk_ms']:.0f} ms")
        if 0 <= args.lookahead < tts.decoder.context[1]:  # approximate streaming needs a wider right context
            sl = stream(tts, args.tokens, args.lookahead)
            results[f"{dtype}_stream_lookahead{args.lookahead}_b1"] = sl
            line += f" | stream lookahead {args.lookahead}: first chunk {sl['first_chunk_ms']:.0f} ms, {sl['x_rt']:.2f}x RT"
        if not args.quick:
            rb = offline(tts, [TEXT] * args.batch, args.tokens)
            results[f"{dtype}_b{args.batch}"] = rb
            line += f" | batch {args.batch}: {rb['x_rt']:.2f}x RT, {rb['tokens_per_s']:.0f} tokens/s"
        if tts.canary is not None:  # the same run's quality check of this format (llmtts/infer/canary.py)
            line += (f" | canary: states {tts.canary.kernel_rel:.3f} from the format's emulation, picks within 1 nat "
                     f"of fp32's at {tts.canary.agreement:.0%} of steps")
        print(line, flush=True)
        if tts is not base:
            del tts
    best = max((results[f"{d}_b1"]["x_rt"], d) for d in timed_dtypes)
    print(f"best batch 1 among formats that passed the canary: {best[1]} {best[0]:.2f}x RT; ours/naive at "
          f"{args.naive_tokens} tokens: {cs['x_rt'] / nv['x_rt']:.2f}x (against soprano-tts side by side: "
          f"benchmarks/vs_soprano.py); load average now {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
