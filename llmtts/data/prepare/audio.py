"""Decoding recordings of any format, length, rate and channel count to mono float32.

libsndfile (through soundfile) reads WAV, FLAC, MP3 and Ogg (Vorbis/Opus) itself. Everything else (M4A/AAC,
MP4, WebM, WMA) goes through PyAV, whose PyPI wheels bundle FFmpeg's decoders, so nothing is needed from the
system; PyAV is already installed with faster-whisper.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from llmtts.audio import AudioError, to_mono
from llmtts.optional import install_hint

SOUNDFILE_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus")
PYAV_EXTS = (".m4a", ".aac", ".mp4", ".webm", ".wma", ".aiff", ".aif")
AUDIO_EXTS = SOUNDFILE_EXTS + PYAV_EXTS


def list_recordings(root: Path) -> list[Path]:
    """Audio files under ``root`` (recursively, hidden files and folders skipped), in sorted order."""
    found = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).parts
        if p.suffix.lower() in AUDIO_EXTS and p.is_file() and not any(part.startswith(".") for part in rel):
            found.append(p)
    return sorted(found)


def probe_seconds(path: str | Path) -> float:
    """A recording's length from its header, without decoding (0.0 when unknown): sizes the progress bar."""
    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # not a libsndfile format, or unreadable
        pass
    try:
        import av

        with av.open(str(path)) as container:
            return float(container.duration or 0) / av.time_base
    except Exception:  # no PyAV, or unreadable: decoding will report it
        return 0.0


def _read_pyav(path: Path) -> tuple[np.ndarray, int]:
    try:
        import av
    except ImportError:
        raise AudioError(f"{path}: decoding {path.suffix} needs PyAV: {install_hint('av')} "
                         "(or convert the file to WAV/FLAC)") from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            sr = int(stream.rate or stream.codec_context.sample_rate)
            # Downmix to mono float at the native rate; FFmpeg's resampler does the channel mixing.
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
            chunks = []
            for frame in container.decode(stream):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except AudioError:
        raise
    except Exception as exc:  # av.error.* (InvalidDataError, ...), OSError
        raise AudioError(f"{path}: unreadable audio ({str(exc)[:200]})") from None
    wav = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return wav, sr


def read_recording(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float32 waveform, sample rate); raises AudioError (one line, names the file)."""
    path = Path(path)
    if path.suffix.lower() in SOUNDFILE_EXTS:
        try:
            wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:  # LibsndfileError, RuntimeError, EOFError
            raise AudioError(f"{path}: unreadable audio ({str(exc).split(': ', 1)[-1][:200]})") from None
        wav = to_mono(wav)
    else:
        wav, sr = _read_pyav(path)
    if wav.size == 0:
        raise AudioError(f"{path}: audio has no samples")
    if not np.isfinite(wav).all():
        raise AudioError(f"{path}: audio contains NaN/inf")
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)
