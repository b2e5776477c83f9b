"""``llmtts eval decoder``: how well a decoder turns an LLM's hidden states back into the recorded audio.

Input: hidden shards (``llmtts llm dump-hidden``): each clip's teacher-forced states and its recording, aligned
token for token. The decoder resynthesises every clip from its states and the result is compared with the
recording: ``mel_distance`` (mean |log-mel difference|, 80 mels at the decoder's n_fft / hop), PESQ (wb), STOI,
SI-SDR -- the metrics of ``llmtts eval codec``, so the two tables read alike.

Why this exists: fine-tuning an LLM moves its hidden states. Scoring the old decoder and a re-fitted one on the
new LLM's states measures, aligned and without an ASR in the loop, what the re-fit buys (docs/finetune.md).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from llmtts.audio import LogMel
from llmtts.codec.evaluate import _finite_mean, pesq_wb, si_sdr, stoi
from llmtts.decoder.export import load_decoder
from llmtts.errors import UserError

METRICS = ("mel_distance", "pesq_wb", "stoi", "si_sdr")


def iter_hidden_clips(input_dir: str | Path, splits: list[str], skipped: Counter):
    """(key, hidden [T, d] float32, audio [T * spt] float32, sample rate) of every clip, in stored order."""
    from llmtts.data.parallel_map import input_shards, iter_shard

    d = Path(input_dir)
    if not (d / "index.json").is_file():
        raise UserError(f"--input-dir {d}: no index.json (expected hidden shards from `llmtts llm dump-hidden`)")
    from llmtts.data.reader import hidden_format_of
    from llmtts.data.shards import read_index

    kind = read_index(d).get("kind")
    if kind != "hidden":
        raise UserError(f"--input-dir {d}: {kind} shards, not hidden shards (run `llmtts llm dump-hidden` first)")
    rels = input_shards(d, splits)
    if not rels:
        raise UserError(f"--input-dir {d}: no shards in split(s) {', '.join(splits)}")
    fmt = hidden_format_of(d)
    for rel in rels:
        for s in iter_shard(d / rel, fields=["audio", "hidden"], on_skip=lambda r: skipped.update([r]),
                            hidden_format=fmt):
            hidden = np.asarray(s["hidden"], dtype=np.float32)
            if not np.isfinite(hidden).all():
                skipped["non_finite_hidden"] += 1
                continue
            yield s["__key__"], hidden, np.asarray(s["audio"], dtype=np.float32), int(s["sample_rate"])


@torch.inference_mode()
def evaluate_decoder(decoder_path: str | Path, input_dir: str | Path, out_dir: str | Path, *,
                     splits: list[str], limit: int | None = None, device: str = "cpu") -> dict:
    model, _ = load_decoder(decoder_path, device)
    cfg = model.cfg
    mel = LogMel(cfg.sample_rate, cfg.n_fft, cfg.hop_length, 80)
    skipped: Counter = Counter()
    rows = []
    for key, hidden, audio, sr in iter_hidden_clips(input_dir, splits, skipped):
        if limit is not None and len(rows) >= limit:
            break
        if sr != cfg.sample_rate or hidden.shape[1] != cfg.hidden_size:
            raise UserError(f"--input-dir {input_dir}: sample {key} has {sr} Hz, {hidden.shape[1]}-d states; the "
                            f"decoder {decoder_path} wants {cfg.sample_rate} Hz, {cfg.hidden_size}-d")
        rec = model(torch.from_numpy(hidden)[None].to(device))[0].float().cpu().numpy()
        n = min(len(rec), len(audio))
        ref, rec = np.clip(audio[:n], -1.0, 1.0), rec[:n]
        ref_mel, rec_mel = mel(torch.from_numpy(ref)[None])[0], mel(torch.from_numpy(rec)[None])[0]
        rows.append({"key": key, "seconds": round(n / sr, 4),
                     "mel_distance": float((ref_mel - rec_mel).abs().mean()),
                     "pesq_wb": pesq_wb(ref, rec, sr), "stoi": stoi(ref, rec, sr), "si_sdr": si_sdr(ref, rec)})
    if not rows:
        raise UserError(f"--input-dir {input_dir}: no usable clips (skipped: {dict(skipped)})")
    summary = {"num_clips": len(rows), "seconds": round(sum(r["seconds"] for r in rows), 3),
               **{m: _finite_mean([r[m] for r in rows]) for m in METRICS}, "skipped": dict(skipped)}
    report = {"summary": summary, "decoder": str(decoder_path), "input": str(input_dir), "splits": splits}
    from llmtts.io import write_json_atomic, write_text_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "per_clip.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_json_atomic(out / "decoder_eval.json", report)
    return report
