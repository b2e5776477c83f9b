"""Finding utterances in a dataset on disk: LJSpeech, LibriTTS(-R) and VCTK trees, folders of audio files with
transcripts beside them, JSONL manifests, and Hugging Face ``save_to_disk`` folders (``hf.py``).

Each reader returns the utterances it found plus the ones it could not use, by reason, without
opening any audio (that happens in the ingestion workers).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from llmtts.data.records import Reject, Utterance, safe_key  # noqa: F401 (re-exported)
from llmtts.errors import UserError

log = logging.getLogger(__name__)

FORMATS = ("ljspeech", "libritts", "vctk", "folder", "manifest", "hf")
# What ingestion's reader (libsndfile) decodes; other formats: convert, or run them through `data prepare`.
FOLDER_AUDIO = (".wav", ".flac", ".mp3", ".ogg", ".opus")

def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _lines(path: Path) -> list[tuple[int, str | None]]:
    """(line number, text) per line; text None for a line that is not valid UTF-8. Decoding line by line lets
    one bad byte cost its own row instead of the whole file (a UTF-8 BOM at the start is dropped)."""
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    out: list[tuple[int, str | None]] = []
    for n, line in enumerate(raw.splitlines(), start=1):
        try:
            out.append((n, line.decode("utf-8")))
        except UnicodeDecodeError:
            out.append((n, None))
    return out


def read_speakers(path: Path) -> dict[str, str]:
    """``id|speaker`` lines. A line that is not UTF-8 is decoded with U+FFFD for the bad bytes, not dropped:
    dropping it would silently give that utterance the default speaker, and the same bytes always decode
    to the same name, so the speaker stays one consistent label."""
    speakers: dict[str, str] = {}
    bad = []
    for n, raw in enumerate(path.read_bytes().removeprefix(b"\xef\xbb\xbf").splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("utf-8", errors="replace")
            bad.append(n)
        if "|" in line:
            k, v = line.split("|", 1)
            speakers[k.strip()] = v.strip()
    if bad:  # not silent: the user sees which names lost characters and how to keep them
        log.warning("%s: %d line(s) not UTF-8 (first: line %d); their speaker names keep U+FFFD for the bad bytes; "
                    "re-save the file as UTF-8 to keep the names as written", path, len(bad), bad[0])
    return speakers


def read_ljspeech(root: Path) -> tuple[list[Utterance], list[Reject]]:
    """``metadata.csv`` (``id|text[|normalized_text]``) + ``wavs/ID.wav``; optional ``speakers.csv``
    (``id|speaker``, written by ``llmtts data corpus``); otherwise one speaker named after the directory."""
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise UserError(f"{root}: no metadata.csv (LJSpeech layout: metadata.csv + wavs/)")
    spk_file = root / "speakers.csv"
    speakers = read_speakers(spk_file) if spk_file.is_file() else {}
    default_speaker = root.resolve().name
    utts, rejects = [], []
    for n, line in _lines(meta):
        if line is None:  # a transcript with a wrong character would train the model on the wrong text
            rejects.append(Reject(f"line{n}", str(meta), "bad_metadata", f"line {n}: not UTF-8 text"))
            continue
        if not line.strip():
            continue
        cols = line.split("|")
        uid = cols[0].strip()
        if len(cols) < 2 or not uid:
            rejects.append(Reject(uid or f"line{n}", str(meta), "bad_metadata", f"line {n}: expected id|text"))
            continue
        wav = root / "wavs" / f"{uid}.wav"
        text = cols[1].strip()
        norm = cols[2].strip() if len(cols) > 2 and cols[2].strip() else None
        utts.append(Utterance(safe_key(uid), str(wav), text, speakers.get(uid, default_speaker), _rel(wav, root), norm))
    return utts, rejects


def read_libritts(root: Path) -> tuple[list[Utterance], list[Reject]]:
    """``**/*.wav`` beside ``*.normalized.txt`` and/or ``*.original.txt``; speaker = first field of the
    LibriTTS id (``19_198_000000_000000``) or else the grandparent directory (SPEAKER/CHAPTER/x.wav)."""
    utts, rejects = [], []
    wavs = sorted(root.rglob("*.wav"))
    if not wavs:
        raise UserError(f"{root}: no *.wav files found (LibriTTS layout: SPEAKER/CHAPTER/ID.wav + ID.normalized.txt)")
    for wav in wavs:
        stem = wav.name[:-4]
        norm_f, orig_f = wav.with_name(stem + ".normalized.txt"), wav.with_name(stem + ".original.txt")
        if not norm_f.is_file() and not orig_f.is_file():
            rejects.append(Reject(safe_key(stem), str(wav), "missing_text", "no .normalized.txt or .original.txt"))
            continue
        try:
            norm = norm_f.read_text(encoding="utf-8").strip() if norm_f.is_file() else None
            orig = orig_f.read_text(encoding="utf-8").strip() if orig_f.is_file() else None
        except (OSError, UnicodeDecodeError) as exc:
            rejects.append(Reject(safe_key(stem), str(wav), "bad_text", str(exc)))
            continue
        parts = stem.split("_")
        speaker = parts[0] if len(parts) >= 2 and parts[0].isdigit() else wav.parent.parent.name
        utts.append(Utterance(safe_key(stem), str(wav), orig or norm or "", speaker, _rel(wav, root), norm))
    return utts, rejects


def _read_transcript(path: Path, key: str, audio: Path) -> tuple[str | None, Reject | None]:
    try:
        return path.read_text(encoding="utf-8").removeprefix("\ufeff").strip(), None
    except (OSError, UnicodeDecodeError) as exc:
        return None, Reject(key, str(audio), "bad_text", f"{path.name}: {exc}")


def read_folder(root: Path) -> tuple[list[Utterance], list[Reject]]:
    """Audio files (``FOLDER_AUDIO``, any depth) each with a same-name ``.txt`` or ``.lab`` transcript
    (``.txt`` wins when both exist); speaker = the file's folder name (the root's name for top-level files)."""
    audios = sorted(p for p in root.rglob("*") if p.suffix.lower() in FOLDER_AUDIO and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not audios:
        raise UserError(f"{root}: no audio files ({', '.join(FOLDER_AUDIO)}) found (folder layout: "
                        "SPEAKER/NAME.wav + SPEAKER/NAME.txt or NAME.lab)")
    utts, rejects = [], []
    for audio in audios:
        rel = audio.relative_to(root)
        key = safe_key(rel.with_suffix("").as_posix())
        transcript = next((audio.with_suffix(e) for e in (".txt", ".lab") if audio.with_suffix(e).is_file()), None)
        if transcript is None:
            rejects.append(Reject(key, str(audio), "missing_text", "no .txt or .lab beside it"))
            continue
        text, bad = _read_transcript(transcript, key, audio)
        if bad is not None:
            rejects.append(bad)
            continue
        speaker = audio.parent.name if audio.parent != root else root.resolve().name
        utts.append(Utterance(key, str(audio), text, speaker, rel.as_posix()))
    return utts, rejects


VCTK_AUDIO_DIRS = ("wav48_silence_trimmed", "wav48")  # VCTK 0.92 (FLAC, two mics), VCTK 0.80 (WAV)


def read_vctk(root: Path) -> tuple[list[Utterance], list[Reject]]:
    """VCTK: ``txt/SPEAKER/ID.txt`` + ``wav48_silence_trimmed/SPEAKER/ID_mic1.flac`` (0.92) or
    ``wav48/SPEAKER/ID.wav`` (0.80). Of 0.92's two microphones, mic1 is used (mic2 only where mic1 is missing):
    both record the same utterance, and one take per utterance keeps the split honest."""
    txt_root = root / "txt"
    audio_root = next((root / d for d in VCTK_AUDIO_DIRS if (root / d).is_dir()), None)
    if not txt_root.is_dir() or audio_root is None:
        raise UserError(f"{root}: not a VCTK tree (expected txt/ and {' or '.join(VCTK_AUDIO_DIRS)}/)")
    takes: dict[str, dict[str, Path]] = {}
    for p in sorted(audio_root.rglob("*")):
        if p.suffix.lower() in (".wav", ".flac") and p.is_file():
            mic = p.stem[-4:] if p.stem.endswith(("_mic1", "_mic2")) else ""
            takes.setdefault(p.stem[:-5] if mic else p.stem, {})[mic] = p
    if not takes:
        raise UserError(f"{audio_root}: no .flac or .wav files")
    utts, rejects = [], []
    for uid in sorted(takes):
        audio = takes[uid].get("mic1") or takes[uid].get("") or takes[uid]["mic2"]
        speaker = audio.parent.name
        txt = txt_root / speaker / f"{uid}.txt"
        if not txt.is_file():
            rejects.append(Reject(safe_key(uid), str(audio), "missing_text", f"no {_rel(txt, root)}"))
            continue
        text, bad = _read_transcript(txt, safe_key(uid), audio)
        if bad is not None:
            rejects.append(bad)
            continue
        utts.append(Utterance(safe_key(uid), str(audio), text, speaker, _rel(audio, root)))
    return utts, rejects


def read_manifest(path: Path) -> tuple[list[Utterance], list[Reject]]:
    """JSON lines ``{"audio": path, "text": ..., "speaker": ..., "id"?: ..., "normalized_text"?: ...}``;
    relative audio paths are resolved against the manifest's directory. ``path`` is the ``.jsonl`` file
    or a directory holding exactly one."""
    if path.is_dir():
        found = sorted(path.glob("*.jsonl"))
        if len(found) != 1:
            raise UserError(f"{path}: expected exactly one *.jsonl manifest in the directory, found {len(found)}")
        path = found[0]
    if not path.is_file():
        raise UserError(f"manifest not found: {path}")
    base = path.parent
    utts, rejects = [], []
    for n, line in _lines(path):
        if line is not None and not line.strip():
            continue
        try:
            if line is None:
                raise ValueError("not UTF-8 text")
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("audio"), str):
                raise ValueError("needs an 'audio' path")
        except ValueError as exc:
            rejects.append(Reject(f"line{n}", str(path), "bad_manifest_line", f"line {n}: {exc}"))
            continue
        audio = Path(row["audio"])
        audio = audio if audio.is_absolute() else base / audio
        uid = str(row.get("id") or Path(row["audio"]).with_suffix("").as_posix())
        utts.append(Utterance(safe_key(uid), str(audio), str(row.get("text") or "").strip(),
                              str(row.get("speaker") or "unknown"), _rel(audio, base),
                              row.get("normalized_text") or None))
    return utts, rejects


def read_source(input_dir: str | Path, fmt: str) -> tuple[list[Utterance], list[Reject]]:
    """Utterances of a dataset, de-duplicated by key (later duplicates are rejected)."""
    root = Path(input_dir)
    if not root.exists():
        raise UserError(f"input not found: {root}")
    if fmt == "ljspeech":
        utts, rejects = read_ljspeech(root)
    elif fmt == "libritts":
        utts, rejects = read_libritts(root)
    elif fmt == "vctk":
        utts, rejects = read_vctk(root)
    elif fmt == "folder":
        utts, rejects = read_folder(root)
    elif fmt == "manifest":
        utts, rejects = read_manifest(root)
    elif fmt == "hf":
        from llmtts.data.hf import read_hf

        utts, rejects = read_hf(root)
    else:
        raise UserError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    seen: set[str] = set()
    unique = []
    for u in utts:
        if u.key in seen:
            rejects.append(Reject(u.key, u.audio, "duplicate_id"))
            continue
        seen.add(u.key)
        unique.append(u)
    return unique, rejects
