"""``llmtts eval codec``: how well a codec reconstructs speech, and at what bitrate.

Input: a shard directory (audio or token shards; token shards are un-padded with ``num_samples``) or a
directory of audio files (an LJSpeech-style ``wavs/`` folder, or any ``*.wav`` / ``*.flac`` below it).
Every clip is resampled to the codec's rate, encoded and decoded alone, and compared with the original:

* ``pesq_wb``: wide-band PESQ (both signals resampled to 16 kHz), ``stoi``, ``si_sdr`` (dB),
  ``mel_distance``: mean |log-mel difference| (80 mels, the codec's n_fft / hop);
* ``bitrate_bps`` = bits per token x tokens per second; ``tokens_per_second``; codebook use (share of codes
  used, perplexity) over all clips; encode / decode speed as x real time.

Writes ``OUT/codec_eval.json`` (summary + settings), ``OUT/per_clip.jsonl`` and
``OUT/spectrograms/KEY.png`` (original vs reconstruction) for the first ``num_plots`` clips; optionally the
first ``save_audio`` reconstructions as ``OUT/audio/KEY.wav``. An unreadable clip is skipped and counted; a
metric that cannot be computed for a clip (e.g. PESQ finds no speech) is ``null`` there and counted.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from llmtts.audio import AudioError, LogMel, load_audio, resample, save_wav
from llmtts.codec.export import codec_metadata, load_codec
from llmtts.codec.model import CodecModel
from llmtts.codec.quantizer import codebook_usage
from llmtts.distributed.process_group import pick_device
from llmtts.errors import UserError
from llmtts.io import write_file_atomic
from llmtts.optional import pyplot, require

log = logging.getLogger(__name__)
AUDIO_EXTS = (".wav", ".flac")


# --- inputs -----------------------------------------------------------------------------------------
def _is_shard_dir(d: Path) -> bool:
    return (d / "index.json").is_file() or any(d.glob("*/*.tar"))


def iter_clips(input_dir: str | Path, skipped: Counter, splits: list[str] | None = None) -> Iterator[tuple[str, np.ndarray, int]]:
    """(key, mono float32 waveform, sample rate) of every clip, in a stable order."""
    d = Path(input_dir)
    if not d.is_dir():
        raise UserError(f"--input-dir {d}: no such directory")
    if _is_shard_dir(d):
        from llmtts.data.parallel_map import input_shards, iter_shard

        for rel in input_shards(d, splits):
            for s in iter_shard(d / rel, fields=["audio"], on_skip=lambda r: skipped.update([r])):
                wav = s["audio"]
                n = s["json"].get("num_samples")  # token shards: drop the padding to whole tokens
                if isinstance(n, int) and 0 < n <= len(wav):
                    wav = wav[:n]
                yield s["__key__"], wav, int(s["sample_rate"])
        return
    root = d / "wavs" if (d / "wavs").is_dir() else d
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTS)
    if not files:
        raise UserError(f"--input-dir {d}: no shards (*/*.tar) and no audio files ({', '.join(AUDIO_EXTS)})")
    for p in files:
        try:
            wav, sr = load_audio(p)
        except AudioError as exc:
            log.warning("skipping %s", exc)
            skipped["unreadable_audio"] += 1
            continue
        yield p.stem, wav, sr


# --- metrics ----------------------------------------------------------------------------------------
def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant SDR in dB (both signals mean-removed)."""
    ref = ref.astype(np.float64) - ref.mean()
    est = est.astype(np.float64) - est.mean()
    alpha = np.dot(est, ref) / max(np.dot(ref, ref), 1e-12)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10(max(np.dot(target, target), 1e-12) / max(np.dot(noise, noise), 1e-12)))


def pesq_wb(ref: np.ndarray, est: np.ndarray, sr: int) -> float | None:
    pesq = require("pesq", "PESQ").pesq

    try:
        return float(pesq(16000, resample(ref, sr, 16000), resample(est, sr, 16000), "wb"))
    except Exception as exc:  # PesqError (no utterance found, too short): a missing value, not a crash
        log.debug("PESQ failed: %s", exc)
        return None


def stoi(ref: np.ndarray, est: np.ndarray, sr: int) -> float | None:
    _stoi = require("pystoi", "STOI").stoi

    try:
        value = float(_stoi(ref, est, sr, extended=False))
    except Exception as exc:
        log.debug("STOI failed: %s", exc)
        return None
    return value if math.isfinite(value) else None


def _finite_mean(values: list) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


# --- plots ------------------------------------------------------------------------------------------
def plot_comparison(path: Path, ref_mel: np.ndarray, rec_mel: np.ndarray, title: str) -> None:
    plt = pyplot("the codec evaluation's plots", "eval")

    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    lo, hi = float(ref_mel.min()), float(ref_mel.max())
    for ax, mel, name in zip(axes, (ref_mel, rec_mel), ("original", "reconstruction")):
        ax.imshow(mel, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
        ax.set_ylabel(f"{name}\nmel bin")
    axes[-1].set_xlabel("frame")
    fig.suptitle(title)
    try:
        write_file_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight"))
    finally:
        plt.close(fig)


# --- the evaluation ---------------------------------------------------------------------------------
def default_out_dir(codec_path: str | Path) -> Path:
    p = Path(codec_path).resolve()
    run = p.parent if p.name == "export" else p
    return run / "eval" / "codec"


@torch.inference_mode()
def evaluate_codec(codec_path: str | Path, input_dir: str | Path, out_dir: str | Path | None = None, *,
                   limit: int | None = None, splits: list[str] | None = None, num_plots: int = 4,
                   save_audio: int = 0, device: str = "cpu") -> dict:
    model: CodecModel = load_codec(codec_path, pick_device(device))
    dev = next(model.parameters()).device
    sr, cfg = model.sample_rate, model.cfg
    out = Path(out_dir) if out_dir is not None else default_out_dir(codec_path)
    out.mkdir(parents=True, exist_ok=True)
    mel = LogMel(sr, cfg.n_fft, cfg.hop_length, 80)
    skipped: Counter = Counter()
    rows, all_codes = [], []
    enc_s = dec_s = audio_s = 0.0
    for i, (key, wav, wav_sr) in enumerate(iter_clips(input_dir, skipped, splits)):
        if limit is not None and i >= limit:
            break
        ref = np.clip(resample(wav, wav_sr, sr), -1.0, 1.0)
        x = torch.from_numpy(ref)[None].to(dev)
        t0 = time.perf_counter()
        codes = model.encode(x)
        t1 = time.perf_counter()
        rec = model.decode(codes)[0, : len(ref)].float().cpu().numpy()
        t2 = time.perf_counter()
        enc_s, dec_s, audio_s = enc_s + (t1 - t0), dec_s + (t2 - t1), audio_s + len(ref) / sr
        all_codes.append(codes[0].cpu())
        ref_mel, rec_mel = mel(torch.from_numpy(ref)[None])[0], mel(torch.from_numpy(rec)[None])[0]
        row = {"key": key, "seconds": round(len(ref) / sr, 4), "n_tokens": int(codes.shape[1]),
               "pesq_wb": pesq_wb(ref, rec, sr), "stoi": stoi(ref, rec, sr), "si_sdr": si_sdr(ref, rec),
               "mel_distance": float((ref_mel - rec_mel).abs().mean())}
        rows.append(row)
        if i < num_plots:
            plot_comparison(out / "spectrograms" / f"{key}.png", ref_mel.numpy(), rec_mel.numpy(),
                            f"{key}: PESQ {row['pesq_wb'] if row['pesq_wb'] is None else round(row['pesq_wb'], 2)}, "
                            f"STOI {row['stoi'] if row['stoi'] is None else round(row['stoi'], 3)}")
        if i < save_audio:
            save_wav(out / "audio" / f"{key}.wav", rec, sr)
    if not rows:
        raise UserError(f"--input-dir {input_dir}: no usable clips (skipped: {dict(skipped)})")
    meta = codec_metadata(model)
    q = meta["codebook"]
    usage = codebook_usage(torch.cat(all_codes), q["codebook_size"])
    summary = {
        "num_clips": len(rows), "seconds": round(audio_s, 3),
        **{m: _finite_mean([r[m] for r in rows]) for m in ("pesq_wb", "stoi", "si_sdr", "mel_distance")},
        "missing": {m: sum(r[m] is None for r in rows) for m in ("pesq_wb", "stoi")},
        "bitrate_bps": q["bits_per_token"] * meta["tokens_per_second"],
        "tokens_per_second": meta["tokens_per_second"], **usage,
        "encode_x_real_time": audio_s / max(enc_s, 1e-9), "decode_x_real_time": audio_s / max(dec_s, 1e-9),
        "skipped": dict(skipped),
    }
    report = {"summary": summary, "codec": str(Path(codec_path)), "input": str(Path(input_dir)),
              "device": str(dev), "sample_rate": sr, "samples_per_token": meta["samples_per_token"],
              "codebook": q}
    from llmtts.io import write_json_atomic, write_text_atomic

    write_text_atomic(out / "per_clip.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_json_atomic(out / "codec_eval.json", report)
    return report
