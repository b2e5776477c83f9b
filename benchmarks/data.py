"""Data-layer throughput: ingestion and the shard reader vs a plain soundfile loop over the wav files;
``--remote``: the reader from local, http:// and s3:// shards vs what the stages consume.

    python benchmarks/data.py [--input-dir DIR] [--repeat 3]
    python benchmarks/data.py --remote [--workers 2] [--shards 8 --per-shard 20 --seconds 5] [--json OUT]

Input: the real LJSpeech sample at ../shared/data/ljspeech-mini if present, else a 40-utterance eSpeak
corpus rendered into a temp dir. The baseline (measured in the same run) reads every original wav with
soundfile.read; ratios > 1 mean faster than that baseline.

``--remote`` (issue 18 §4): audio, token and hidden-state shards at Soprano's layout (32 kHz FLAC, 2048
samples per token, d=512 states in dump-hidden's default format) served on loopback by Python's http.server
and moto's S3 server (``benchmarks/remote_read.py``), read one unshuffled epoch per location with the fields
each stage reads (codec: audio; LLM: codes; decoder: hidden + its crop of the audio, through the decoder's
transform; the whole-utterance decode it replaced is printed beside it), in-process and with N DataLoader
workers, in batches of 4, timed from the first batch on (worker start-up, once per run, left out). Consumption rates are measured in the same run: a training step (forward, backward, AdamW) of the
tiny recipe's decoder (configs/decoder/tiny.yaml, its batch) and LLM (configs/llm/tiny.yaml, packed,
``benchmarks/llm.py``) on one CPU thread, in audio seconds per second. Printed ratio = reader audio s/s over
the consumer's for the LLM (whole utterances), samples/s over crops/s for the decoder (one crop of
``recon_crop_tokens`` per sample, however long the sample); goal >= 5x. Loopback bounds the reader's own cost, not a network.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import soundfile as sf

from llmtts.data.corpus import build_corpus
from llmtts.data.ingest import IngestConfig, ingest
from llmtts.decoder.data import CropTokens
from llmtts.data.reader import ShardLoader

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO.parent / "shared" / "data" / "ljspeech-mini"


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


def _tiny_decoder_crop_tokens() -> int:
    from llmtts.config import load_config
    from llmtts.decoder.config import DecoderConfig

    return load_config(DecoderConfig, REPO / "configs/decoder/tiny.yaml", []).recon_crop_tokens


def decoder_consumption(steps: int) -> tuple[float, float]:
    """(audio seconds, crops) per second the tiny recipe's decoder recon steps consume (CPU time). One crop
    is cut from each sample the reader delivers, however long: crops/s is the rate the reader must match."""
    import torch

    from llmtts.config import load_config
    from llmtts.decoder.config import DecoderConfig
    from llmtts.decoder.model import HiddenDecoder
    from llmtts.nn.losses import ReconstructionLoss

    from llmtts.codec.config import CodecConfig
    from llmtts.llm.config import LLMConfig

    cfg = load_config(DecoderConfig, REPO / "configs/decoder/tiny.yaml", [])
    # the token facts the decoder stage reads from its input: the tiny codec's and the tiny LLM's
    codec = load_config(CodecConfig, REPO / "configs/codec/tiny.yaml", []).model
    facts = {"sample_rate": codec.sample_rate, "samples_per_token": codec.samples_per_token,
             "hidden_size": load_config(LLMConfig, REPO / "configs/llm/tiny.yaml", []).model.hidden_size}
    m = cfg.model.resolved(facts, "the tiny recipe")
    model = HiddenDecoder(m)
    loss_fn = ReconstructionLoss(m.sample_rate, m.n_fft, cfg.loss.mel_resolutions, cfg.loss.stft_resolutions,
                                 cfg.loss.mel_weight, cfg.loss.stft_weight)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b, t = cfg.data.max_batch_size, cfg.recon_crop_tokens  # the config's batch: 4 crops of 16 tokens (1 s)
    hidden, audio = torch.randn(b, t, m.hidden_size), 0.1 * torch.randn(b, t * m.samples_per_token)
    times = []
    for i in range(steps + 2):
        t0 = time.process_time()
        loss, _ = loss_fn(model(hidden), audio)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:  # warm-up
            times.append(time.process_time() - t0)
    step = statistics.median(times)
    return audio.numel() / m.sample_rate / step, b / step


def llm_consumption(utterances: int) -> float:
    """Audio seconds per second the tiny LLM's packed training step consumes (benchmarks/llm.py, CPU time)."""
    import torch
    from llm import packed_batches, run, speech_like_segments

    from llmtts.config import load_config
    from llmtts.llm.config import LLMConfig
    from llmtts.llm.model import build_model
    from llmtts.llm.vocab import Vocab, round_up

    cfg = load_config(LLMConfig, REPO / "configs/llm/tiny.yaml", [])
    n_audio = cfg.vocab.n_audio or 1000
    vocab = Vocab(n_audio=n_audio, n_text=95, size=cfg.model.vocab_size or round_up(4 + n_audio + 95))
    row = 1024  # benchmarks/llm.py's row: fits a 30 s utterance
    segs = speech_like_segments(utterances, vocab, row)
    torch.manual_seed(0)
    model = build_model(cfg.model, vocab.size).train()
    tok_s, _ = run(model, packed_batches(segs, row, max(cfg.data.batch_budget, row)), vocab, torch.device("cpu"),
                   amp=False)
    audio_share = sum(len(s) - s.n_prompt - 1 for s in segs) / sum(len(s) for s in segs)
    return tok_s * audio_share / 15.625  # speech_like_segments: 15.625 audio tokens per second


def remote_main(args: argparse.Namespace) -> None:
    import torch
    from remote_read import loopback_servers, read_epoch, write_shards

    from llmtts.data.hidden_format import HiddenFormat

    torch.set_num_threads(1)
    dec_audio, dec_crops = decoder_consumption(20)
    dec_crop_tokens = _tiny_decoder_crop_tokens()
    consumers = {"decoder": dec_audio, "llm": llm_consumption(40)}
    formats = [HiddenFormat(*f.split("+")) for f in args.hidden_formats] if args.hidden_formats else [HiddenFormat()]
    print(f"consumers (1 CPU thread, CPU time): decoder {dec_audio:.1f} audio s/s in {dec_crops:.1f} crops/s "
          f"(one per sample read), llm {consumers['llm']:.1f} audio s/s (whole utterances)")
    # (kind, fields read, consumer the ratio is against)
    plan = [("audio", ["audio"], "decoder", None), ("tokens", ["codes"], "llm", None)]
    # The decoder's own reader (decoder/stage.py): audio_crop decodes only the crop's frames; "audio" (the
    # whole utterance decoded per crop, as before) is the baseline in the same run.
    plan += [("hidden", fields, "decoder", f) for f in formats for fields in (["audio", "hidden"], ["audio_crop", "hidden"])]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, loopback_servers() as publish:
        for kind, fields, consumer, fmt in plan:
            name = kind if fmt is None else f"{kind}-{fmt.dtype}-{fmt.compression}" + ("-crop" if "audio_crop" in fields else "")
            root = Path(tmp) / name
            nbytes = write_shards(root, args.shards, args.per_shard, args.seconds, kind=kind, sample_rate=32000,
                                  samples_per_token=2048, hidden_size=512, hidden_format=fmt)
            audio_s = sum(x["seconds"] for x in json.loads((root / "index.json").read_text())["shards"])
            print(f"{kind} shards: {args.shards} x {args.per_shard} samples of {args.seconds:g} s, "
                  f"{nbytes / 1e6:.1f} MB ({nbytes / audio_s / 1e3:.1f} kB per audio s)"
                  + (f", states {fmt.dtype}+{fmt.compression}" if kind == "hidden" else ""))
            for loc, src in publish(root, name).items():
                for workers in (0, args.workers):
                    crop = (CropTokens(2048, 32000, dec_crop_tokens, 512, "hidden", seed=0, random=True)
                            if kind == "hidden" else None)
                    wall, n = read_epoch(src, fields, workers, steady=True, batch=4, transform=crop)
                    rate = audio_s * n / (args.shards * args.per_shard) / wall
                    # The decoder takes one crop per sample: compare samples/s with its crops/s; the LLM reads
                    # whole utterances: compare audio seconds.
                    ratio = n / wall / dec_crops if consumer == "decoder" else rate / consumers["llm"]
                    # "hidden": the decoder's reader (crop decoded); "hidden-whole": the old whole-utterance decode
                    row_kind = kind + ("-whole" if kind == "hidden" and "audio_crop" not in fields else "")
                    rows.append({"kind": row_kind, "format": None if fmt is None else f"{fmt.dtype}+{fmt.compression}",
                                 "shard_kB_per_audio_s": nbytes / audio_s / 1e3, "fields": fields, "location": loc, "workers": workers,
                                 "samples_s": n / wall, "MB_s": nbytes / wall / 1e6, "audio_s_per_s": rate,
                                 "consumer": consumer, "ratio": ratio})
                    r = rows[-1]
                    print(f"  {name:17s} {'+'.join(fields):12s} {loc:5s} workers={workers}: {r['samples_s']:7.0f} "
                          f"samples/s {r['MB_s']:7.1f} MB/s {rate:8.0f} audio s/s = {r['ratio']:6.1f}x the {consumer}"
                          f"{'  BELOW 5x' if r['ratio'] < 5 else ''}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"consumers_audio_s_per_s": consumers, "decoder_crops_s": dec_crops,
                                         "reads": rows,
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input-dir", type=Path, default=DEFAULT_INPUT)
    ap.add_argument("--repeat", type=int, default=3, help="passes over the data for the read benchmarks")
    ap.add_argument("--remote", action="store_true", help="local / http / s3 reads vs the stages' consumption")
    ap.add_argument("--workers", type=int, default=2, help="--remote: DataLoader workers of the second pass")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--per-shard", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=5.0, help="--remote: audio per sample")
    ap.add_argument("--json", type=Path, default=None, help="--remote: write the numbers here")
    ap.add_argument("--hidden-formats", nargs="*", default=None, metavar="DTYPE+COMPRESSION",
                    help="--remote: hidden shard formats to read (default: dump-hidden's default), e.g. fp16+none")
    args = ap.parse_args()
    if args.remote:
        return remote_main(args)
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
