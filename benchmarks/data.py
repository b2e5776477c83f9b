"""Data-layer throughput: ingestion and the shard reader vs a plain soundfile loop over the wav files.

    python benchmarks/data.py [--input-dir DIR] [--repeat 3]

Input: the real LJSpeech sample at ../shared/data/ljspeech-mini if present, else a 40-utterance eSpeak
corpus rendered into a temp dir. The baseline (measured in the same run) reads every original wav with
soundfile.read; ratios > 1 mean faster than that baseline.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import soundfile as sf

from llmtts.data.corpus import build_corpus
from llmtts.data.ingest import IngestConfig, ingest
from llmtts.data.reader import ShardLoader

DEFAULT_INPUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ljspeech-mini"


def baseline_read(wavs: list[Path], repeat: int) -> tuple[float, float, int]:
    """(seconds of audio, wall seconds, samples) for a soundfile loop over the original files."""
    audio_s, n, t0 = 0.0, 0, time.perf_counter()
    for _ in range(repeat):
        for w in wavs:
            wav, sr = sf.read(str(w), dtype="float32")
            audio_s += len(wav) / sr
            n += 1
    return audio_s, time.perf_counter() - t0, n


def reader_pass(shard_dir: Path, workers: int, repeat: int) -> tuple[float, float, int]:
    ld = ShardLoader(shard_dir, "train", 0, 1, length_fn=lambda s: len(s["audio"]), batch_budget=10**9,
                     max_batch_size=16, num_workers=workers, shuffle_buffer=64, endless=True)
    n_per_epoch = sum(1 for b in ShardLoader(shard_dir, "train", 0, 1, length_fn=lambda s: 0, batch_budget=1,
                                             max_batch_size=1, fields=[], endless=False) for _ in b)
    audio_s, n, t0 = 0.0, 0, time.perf_counter()
    for batch in ld:
        for s in batch:
            audio_s += len(s["audio"]) / s["sample_rate"]
            n += 1
        if n >= n_per_epoch * repeat:
            break
    return audio_s, time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input-dir", type=Path, default=DEFAULT_INPUT)
    ap.add_argument("--repeat", type=int, default=3, help="passes over the data for the read benchmarks")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmtts-bench-"))
    src = args.input_dir
    if not (src / "metadata.csv").is_file():
        src = tmp / "corpus"
        t0 = time.perf_counter()
        info = build_corpus(src, 40, voice="espeak", seed=0, progress=False)
        dt = time.perf_counter() - t0
        print(f"corpus (espeak): {info['seconds']:.0f} s of audio in {dt:.1f} s = {info['seconds'] / dt:.0f}x real time")
    for voice, n in (("piper", 6), ("espeak", 40)):
        t0 = time.perf_counter()
        info = build_corpus(tmp / f"voice_{voice}", n, voice=voice, seed=1, progress=False)
        dt = time.perf_counter() - t0
        print(f"corpus  {voice:6s} 1 worker: {info['seconds']:6.1f} s of audio in {dt:5.1f} s = "
              f"{info['seconds'] / dt:6.1f}x real time (incl. voice loading)")
    wavs = sorted((src / "wavs").glob("*.wav"))
    base_s, base_t, base_n = baseline_read(wavs, args.repeat)
    base_speed = base_s / base_t
    print(f"input: {src} ({len(wavs)} wavs)")
    print(f"baseline soundfile loop: {base_n / base_t:9.1f} samples/s  {base_speed:9.0f} audio s/s")

    for workers in (1, 2):
        out = tmp / f"shards_w{workers}"
        t0 = time.perf_counter()
        index = ingest(src, "ljspeech", out, IngestConfig(sample_rate=24000, samples_per_shard=8, workers=workers,
                                                           val_fraction=0.0), progress=False)
        dt = time.perf_counter() - t0
        speed = index["totals"]["seconds"] / dt
        print(f"ingest  workers={workers}: {speed:9.0f} audio s/s total, {speed / workers:9.0f} per worker "
              f"(ratio vs baseline read {speed / base_speed:5.2f}x; resample 24 kHz + FLAC encode)")
    shard_dir = tmp / "shards_w1"
    for workers in (0, 2):
        audio_s, t, n = reader_pass(shard_dir, workers, args.repeat)
        print(f"reader  workers={workers}: {n / t:9.1f} samples/s  {audio_s / t:9.0f} audio s/s  "
              f"(ratio vs baseline {audio_s / t / base_speed:5.2f}x; FLAC decode + shuffle + buckets)")
    print(f"(temp files in {tmp})")


if __name__ == "__main__":
    main()
