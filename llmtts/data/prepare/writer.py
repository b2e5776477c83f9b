"""The prepared dataset on disk.

    OUT/wavs/REC_0001.wav     one cut: mono 16-bit PCM at the recording's own rate, loudness-normalised
    OUT/parts/REC.json        everything known about one recording's cuts; written last (atomically), so its
                              presence with a matching fingerprint means "this recording is done" (resume)
    OUT/metadata.csv          id|text of every kept cut (LJSpeech layout: ``data shards --format ljspeech``)
    OUT/speakers.csv          id|speaker
    OUT/cuts.jsonl            every cut, kept or not: source file, start/end in it, transcript, ASR confidence,
                              loudness, and ``status`` ("kept" or the rejection reason)
    OUT/prepare.json          settings and totals, with rejections counted by reason

The last four are rebuilt from the part files at the end of every run.
"""
from __future__ import annotations

import json
from pathlib import Path

from llmtts.data.prepare.transcribe import AsrFilter
from llmtts.data.shards import confined
from llmtts.errors import UserError
from llmtts.io import write_json_atomic, write_text_atomic

PARTS = "parts"
WAVS = "wavs"
SUMMARY = "prepare.json"


def part_path(out: Path, rec_key: str) -> Path:
    return out / PARTS / f"{rec_key}.json"


def read_part(out: Path, rec_key: str) -> dict | None:
    """A recording's part file, or None when absent or unreadable (then the recording is redone)."""
    try:
        part = json.loads(part_path(out, rec_key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return part if isinstance(part, dict) and isinstance(part.get("cuts"), list) else None


def remove_part(out: Path, rec_key: str, part: dict | None) -> None:
    """Delete a part file and the wavs it lists (and nothing else)."""
    for cut in (part or {}).get("cuts", []):
        if isinstance(cut, dict) and isinstance(cut.get("wav"), str):
            try:
                (out / confined(cut["wav"], part_path(out, rec_key))).unlink(missing_ok=True)
            except UserError:
                pass  # a path outside OUT in a tampered part file: never delete it
    part_path(out, rec_key).unlink(missing_ok=True)


def _clean(text: str) -> str:
    """One metadata.csv field: no column separator, no line break."""
    return " ".join(text.replace("|", " ").split())


def assemble(out: Path, records: list[dict], asr_filter: AsrFilter) -> dict:
    """Write metadata.csv, speakers.csv and cuts.jsonl from ``records`` (one per recording: ``part`` or an
    ``error``, plus ``source`` and ``speaker``); returns the totals for prepare.json."""
    meta, speakers, rows = [], [], []
    rejected: dict[str, int] = {}
    kept_s = 0.0
    failed = 0
    for rec in records:
        if rec.get("error"):
            failed += 1
            rejected[rec["error"]] = rejected.get(rec["error"], 0) + 1
            rows.append({"source": rec["source"], "status": rec["error"], "detail": rec.get("detail", "")})
            continue
        for cut in rec["part"]["cuts"]:
            status = cut.get("audio_reason") or asr_filter.reason(cut)
            rows.append({"source": rec["source"], "speaker": rec["speaker"], **cut, "status": status or "kept"})
            if status:
                rejected[status] = rejected.get(status, 0) + 1
                continue
            meta.append(f"{cut['id']}|{_clean(cut['text'])}\n")
            speakers.append(f"{cut['id']}|{_clean(rec['speaker'])}\n")
            kept_s += cut["duration_s"]
    write_text_atomic(out / "metadata.csv", "".join(meta))
    write_text_atomic(out / "speakers.csv", "".join(speakers))
    write_text_atomic(out / "cuts.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return {"recordings": len(records), "recordings_failed": failed, "cuts": sum(1 for r in rows if "id" in r),
            "kept": len(meta), "hours_kept": round(kept_s / 3600, 4), "rejected": dict(sorted(rejected.items()))}


def write_summary(out: Path, summary: dict) -> None:
    write_json_atomic(out / SUMMARY, summary, sort_keys=True)
