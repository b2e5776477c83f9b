"""``llmtts data shards``: a dataset on disk -> audio shards (FLAC at one rate + JSON) + index.json.

Deterministic for a given seed: the seed splits train/val and orders utterances into shards; each shard
is written by one worker from a fixed list of utterances, so the worker count changes nothing in the
output. Bad inputs (empty text, unreadable/truncated/silent audio, out-of-range durations, broken
metadata lines) are counted by reason in index.json and listed in ``rejects.jsonl``; nothing stops the run.
"""
from __future__ import annotations

import io
import json
import logging
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from llmtts.data.workers import task_results
from llmtts.audio import AudioError, encode_flac, load_audio
from llmtts.data import outdir
from llmtts.data.hf import HF_PREFIX, fetch_audio
from llmtts.data.shards import ShardSummary, ShardWriter, build_index, shard_name, write_index
from llmtts.data.sources import Reject, Utterance, read_source
from llmtts.errors import UserError
from llmtts.io import write_text_atomic
from llmtts.text.normalize import normalize_text
from llmtts.token_space import DEFAULT_SAMPLE_RATE

log = logging.getLogger(__name__)
REJECTS_NAME = "rejects.jsonl"


@dataclass
class IngestConfig:
    sample_rate: int = DEFAULT_SAMPLE_RATE
    samples_per_shard: int = 1000
    val_fraction: float = 0.02
    seed: int = 0
    workers: int = 1
    min_duration_s: float = 0.3
    max_duration_s: float = 30.0
    # Peak below this (about -70 dBFS) counts as silent.
    silence_peak: float = 3e-4
    lang: str = "en"

    def validate(self) -> None:
        if self.sample_rate < 1000:
            raise UserError(f"--sample-rate must be >= 1000 Hz, got {self.sample_rate}")
        if self.samples_per_shard < 1:
            raise UserError(f"--samples-per-shard must be >= 1, got {self.samples_per_shard}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.min_duration_s >= self.max_duration_s:
            raise UserError(f"--min-duration ({self.min_duration_s}) must be below --max-duration ({self.max_duration_s})")


# --- checks on one file -------------------------------------------------------------------------
def wav_is_truncated(path: str) -> bool:
    """True when a RIFF/WAVE file's data chunk claims more bytes than the file holds (libsndfile
    silently reads what is there, so a cut-off download would otherwise pass as a shorter clip)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return False
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                cid, csize = struct.unpack("<4sI", f.read(8))
                if cid == b"data":
                    return csize != 0xFFFFFFFF and pos + 8 + csize > size
                pos += 8 + csize + (csize & 1)
            return True  # no data chunk before the end of the file
    except OSError:
        return False


def load_checked(u: Utterance, cfg: IngestConfig) -> tuple[np.ndarray | None, str, str]:
    """(audio at cfg.sample_rate, "", "") or (None, reason, detail)."""
    if u.audio.startswith(HF_PREFIX):  # a row of a saved Hugging Face dataset: its stored bytes (or path)
        try:
            src = fetch_audio(u.audio)
        except UserError as exc:
            return None, "missing_audio", str(exc)[:200]
        if isinstance(src, bytes):
            return _check_decoded(src, cfg)
        u = Utterance(u.key, src, u.text, u.speaker, u.source, u.normalized_text)
    if not os.path.isfile(u.audio):
        return None, "missing_audio", "file not found"
    if os.path.getsize(u.audio) == 0:
        return None, "unreadable_audio", "empty file"
    if u.audio.lower().endswith(".wav") and wav_is_truncated(u.audio):
        return None, "truncated_audio", "data chunk shorter than its header says"
    return _check_decoded(u.audio, cfg)


def _check_decoded(src: str | bytes, cfg: IngestConfig) -> tuple[np.ndarray | None, str, str]:
    """Decode a path or encoded bytes and apply the duration / silence checks."""
    if isinstance(src, bytes) and not src:
        return None, "unreadable_audio", "empty audio bytes"
    try:
        declared = sf.info(io.BytesIO(src) if isinstance(src, bytes) else src).frames
        wav, sr = load_audio(src)
    except (AudioError, RuntimeError, sf.LibsndfileError) as exc:
        msg = str(exc)
        reason = "truncated_audio" if "lost sync" in msg or "EOF" in msg.upper() else "unreadable_audio"
        return None, reason, msg.split(": ", 1)[-1][:200]
    if 0 < declared < 2**62 and len(wav) < declared:
        return None, "truncated_audio", f"{len(wav)} of {declared} frames"
    duration = len(wav) / sr
    if duration < cfg.min_duration_s:
        return None, "too_short", f"{duration:.2f} s"
    if duration > cfg.max_duration_s:
        return None, "too_long", f"{duration:.2f} s"
    if float(np.abs(wav).max()) < cfg.silence_peak:
        return None, "silent", f"peak {float(np.abs(wav).max()):.2e}"
    if sr != cfg.sample_rate:
        from llmtts.audio import resample
        wav = resample(wav, sr, cfg.sample_rate)
    return wav, "", ""


# --- one shard per task -------------------------------------------------------------------------
def _write_shard(task: tuple[str, str, int, list[dict], dict]) -> tuple[dict, list[dict]]:
    out_dir, split, index, items, cfg_d = task
    cfg = IngestConfig(**cfg_d)
    rel = f"{split}/{shard_name(index)}"
    rejects: list[Reject] = []
    with ShardWriter(Path(out_dir) / rel, rel_path=rel, split=split) as writer:
        for d in items:
            u = Utterance(**d)
            if not u.text.strip():
                rejects.append(Reject(u.key, u.audio, "empty_text"))
                writer.reject("empty_text")
                continue
            norm = normalize_text(u.normalized_text or u.text, lang=cfg.lang)
            if not norm:
                rejects.append(Reject(u.key, u.audio, "empty_text", "nothing left after normalisation"))
                writer.reject("empty_text")
                continue
            wav, reason, detail = load_checked(u, cfg)
            if wav is None:
                rejects.append(Reject(u.key, u.audio, reason, detail))
                writer.reject(reason)
                continue
            meta = {"text": u.text, "normalized_text": norm, "speaker": u.speaker,
                    "duration_s": round(len(wav) / cfg.sample_rate, 4), "sample_rate": cfg.sample_rate,
                    "source": u.source}
            writer.write(u.key, {"flac": encode_flac(wav, cfg.sample_rate), "json": meta})
    return writer.summary.to_dict(), [r.to_dict() for r in rejects]


def plan_shards(utts: list[Utterance], cfg: IngestConfig) -> dict[str, list[list[Utterance]]]:
    """Split into train/val and cut each split into shards; a pure function of (utterances, cfg)."""
    utts = sorted(utts, key=lambda u: u.key)
    order = np.random.default_rng(cfg.seed).permutation(len(utts)).tolist()
    n_val = int(round(cfg.val_fraction * len(utts)))
    if cfg.val_fraction > 0 and n_val == 0 and len(utts) >= 2:
        n_val = 1
    splits = {"val": [utts[i] for i in order[:n_val]], "train": [utts[i] for i in order[n_val:]]}
    k = cfg.samples_per_shard
    return {name: [items[i:i + k] for i in range(0, len(items), k)] for name, items in splits.items() if items}


def ingest(input_dir: str | Path, fmt: str, out_dir: str | Path, cfg: IngestConfig, progress: bool = True) -> dict:
    """Build the shard directory; returns its index. A finished directory with the same settings is kept."""
    cfg.validate()
    out_dir = outdir.check_out_path(out_dir, [input_dir])
    settings = {"format": fmt, "input": str(Path(input_dir).resolve()), **asdict(cfg)}
    settings.pop("workers")
    old = outdir.shard_index_or_none(out_dir)
    if old is not None and old.get("ingest") == settings:
        log.info("shards in %s are already complete", out_dir)
        return old
    marker = outdir.ensure_ours(out_dir, recognised=old is not None, what="a shard folder")
    utts, rejects = read_source(input_dir, fmt)
    if not utts and not rejects:
        raise UserError(f"{input_dir}: no utterances found for format '{fmt}'")
    plan = plan_shards(utts, cfg)
    # A previous run with other settings: its shards would mix in. Only the files it listed go.
    outdir.remove_shards(out_dir, outdir.owned_shards(old, marker), extra_files=[REJECTS_NAME])
    outdir.claim(out_dir, {"written_by": "llmtts data shards", "kind": "audio", "input": settings["input"],
                           "files": [f"{split}/{shard_name(i)}" for split, shards in plan.items()
                                     for i in range(len(shards))]})
    tasks = [(str(out_dir), split, i, [asdict(u) for u in items], asdict(cfg))
             for split, shards in plan.items() for i, items in enumerate(shards)]
    summaries: list[ShardSummary] = []
    all_rejects = [r.to_dict() for r in rejects]
    bar = _bar(sum(len(t[3]) for t in tasks), progress)
    try:
        with task_results(_write_shard, tasks, cfg.workers, ordered=False) as results:
            for summary, shard_rejects in results:
                s = ShardSummary.from_dict(summary)
                summaries.append(s)
                all_rejects += shard_rejects
                bar.update(s.num_samples + sum(s.rejected.values()))
    finally:
        bar.close()
    all_rejects.sort(key=lambda r: (r["id"], r["reason"], r["path"]))
    write_text_atomic(out_dir / REJECTS_NAME, "".join(json.dumps(r, sort_keys=True) + "\n" for r in all_rejects))
    source_rejected: dict[str, int] = {}
    for r in rejects:
        source_rejected[r.reason] = source_rejected.get(r.reason, 0) + 1
    index = build_index("audio", summaries, rejected=source_rejected, sample_rate=cfg.sample_rate,
                        num_inputs=len(utts) + len(rejects), ingest=settings)
    write_index(out_dir, index)
    _log_summary(index, out_dir)
    return index


def _log_summary(index: dict, out_dir: Path) -> None:
    t = index["totals"]
    print(f"wrote {t['num_samples']} samples ({t['seconds'] / 3600:.2f} h) in {t['num_shards']} shard(s) to {out_dir}")
    if index["rejected"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in index["rejected"].items())
        print(f"rejected {index['num_rejected']} ({reasons}); list in {out_dir / REJECTS_NAME}")


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def _bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, desc="shards", unit="utt", dynamic_ncols=True)
