"""Codec encode throughput (seconds of audio per second) of the soprano config on this machine's CPU:
batched (``--batch-size`` clips per forward, the way ``llmtts codec encode`` batches) vs one clip at a time.

    python benchmarks/codec.py [--clips 16] [--batch-size 8] [--threads N]

Weights are random (throughput does not depend on them); clips are synthetic voiced audio of 2-6 s at
32 kHz. Both modes encode the same clips in the same run; the script checks they give identical codes
and prints the ratio.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from llmtts.codec.config import CodecConfig
from llmtts.codec.encode import encode_batch
from llmtts.codec.model import CodecModel
from llmtts.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def voiced(n: int, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 110 + 30 * np.sin(2 * math.pi * 2 * t + seed)
    phase = 2 * math.pi * np.cumsum(f0) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * math.pi * 3 * t))
    return (0.2 * wav + 0.003 * rng.standard_normal(n)).astype(np.float32)


def run(model: CodecModel, clips: list[np.ndarray], batch_size: int) -> tuple[float, list[np.ndarray]]:
    order = sorted(range(len(clips)), key=lambda i: len(clips[i]))  # what encode does inside a window
    codes: list = [None] * len(clips)
    t0 = time.perf_counter()
    for s in range(0, len(order), batch_size):
        idx = order[s: s + batch_size]
        for i, c in zip(idx, encode_batch(model, [clips[i] for i in idx])):
            codes[i] = c
    return time.perf_counter() - t0, codes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "codec" / "soprano.yaml"))
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(CodecConfig, args.config).model
    torch.manual_seed(0)
    model = CodecModel(cfg).eval()
    sr = cfg.sample_rate
    rng = np.random.default_rng(0)
    clips = [voiced(int(sr * rng.uniform(2.0, 6.0)), sr, i) for i in range(args.clips)]
    audio_s = sum(len(c) for c in clips) / sr
    run(model, clips[:2], 2)  # warm-up (allocator, kernels)
    t_one, codes_one = run(model, clips, 1)
    t_batch, codes_batch = run(model, clips, args.batch_size)
    same = all(np.array_equal(a, b) for a, b in zip(codes_one, codes_batch))
    print(f"codec encode, {Path(args.config).name}: {args.clips} clips, {audio_s:.1f} s of audio, "
          f"{torch.get_num_threads()} threads, CPU")
    print(f"  one clip at a time : {audio_s / t_one:8.1f} audio s/s  ({t_one:.2f} s)")
    print(f"  batch of {args.batch_size:<2d}        : {audio_s / t_batch:8.1f} audio s/s  ({t_batch:.2f} s)")
    print(f"  ratio batched / one: {t_one / t_batch:.2f}x   identical codes: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
