"""Audio IO, resampling and spectral features without torchaudio.

soundfile reads/writes, soxr resamples, ``torch.stft`` + a Slaney mel filterbank computes features.
"""
from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from torch import nn

from llmtts.errors import UserError
from llmtts.io import write_bytes_atomic


class AudioError(UserError, ValueError):
    """Audio could not be read or is unusable; the message names the file."""


def to_mono(wav: np.ndarray) -> np.ndarray:
    return wav.mean(axis=1) if wav.ndim == 2 else wav


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return wav.astype(np.float32, copy=False)
    return soxr.resample(wav.astype(np.float32, copy=False), sr_in, sr_out, quality="HQ").astype(np.float32)


def load_audio(src: str | Path | bytes, sample_rate: int | None = None, name: str | None = None) -> tuple[np.ndarray, int]:
    """Read ``src`` (path or encoded bytes) as mono float32, resampled to ``sample_rate`` if given."""
    label = name or (str(src) if not isinstance(src, (bytes, bytearray)) else "<bytes>")
    try:
        if isinstance(src, (bytes, bytearray)):
            wav, sr = sf.read(io.BytesIO(src), dtype="float32", always_2d=False)
        else:
            wav, sr = sf.read(str(src), dtype="float32", always_2d=False)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / EOFError
        raise AudioError(f"{label}: unreadable audio ({exc})") from None
    wav = to_mono(np.asarray(wav, dtype=np.float32))
    if wav.size == 0:
        raise AudioError(f"{label}: audio has no samples")
    if not np.isfinite(wav).all():
        raise AudioError(f"{label}: audio contains NaN/inf")
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, int(sr)


def encode_flac(wav: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(wav, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def wav_bytes(wav: np.ndarray | torch.Tensor, sample_rate: int) -> bytes:
    """16-bit PCM mono WAV file content, clipped to [-1, 1]."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().float().cpu().numpy()
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0), sample_rate, format="WAV",
             subtype="PCM_16")
    return buf.getvalue()


def save_wav(path: str | Path, wav: np.ndarray | torch.Tensor, sample_rate: int) -> None:
    """Encoded in memory, then written by ``llmtts.io.write_bytes_atomic``: unique temporary names, and a FIFO or
    device (``--out /dev/null``) is written through, never replaced (libsndfile cannot write a WAV header into a
    pipe itself: it seeks back to fill in the sizes)."""
    write_bytes_atomic(path, wav_bytes(wav, sample_rate))


def save_wav_pieces(path: str | Path, pieces, sample_rate: int) -> int:
    """Write the float audio ``pieces`` (an iterable, consumed once) as one 16-bit PCM mono WAV, piece by piece:
    memory holds one piece, not the whole file (a 100 k-character text held 1.8 GB). A regular file goes through
    a unique temporary file beside it, renamed over it at the end (``io.write_file_atomic``); a FIFO or device
    gets the pieces collected and written through (libsndfile seeks back to fill in a WAV's sizes). Returns the
    number of samples written."""
    from llmtts.io import write_file_atomic

    path = Path(path)
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file():
        chunks = [np.asarray(p, dtype=np.float32).reshape(-1) for p in pieces]
        wav = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        save_wav(path, wav, sample_rate)
        return len(wav)
    n = 0

    def write(tmp: Path) -> None:
        nonlocal n
        with sf.SoundFile(tmp, "w", samplerate=sample_rate, channels=1, format="WAV", subtype="PCM_16") as f:
            for p in pieces:
                p = np.clip(np.asarray(p, dtype=np.float32).reshape(-1), -1.0, 1.0)
                f.write(p)
                n += len(p)

    write_file_atomic(target, write)
    return n


@lru_cache(maxsize=32)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular filters on the Slaney mel scale (librosa's defaults), ``[n_mels, n_fft // 2 + 1]``
    float32: transformers' ``mel_filter_bank`` (within 2e-9 of the hand-written copy it replaced: tests/test_audio.py)."""
    from transformers.audio_utils import mel_filter_bank  # here, not at the top: `import llmtts.audio` stays light

    fb = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=f_min,
                         max_frequency=f_max or sample_rate / 2, sampling_rate=sample_rate, norm="slaney",
                         mel_scale="slaney")
    return np.ascontiguousarray(fb.T, dtype=np.float32)


class LogMel(nn.Module):
    """waveform [B, N] -> log-mel [B, n_mels, frames]; center=True so frames = N // hop + 1."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, win_length: int | None = None,
                 f_min: float = 0.0, f_max: float | None = None, center: bool = True):
        super().__init__()
        self.n_fft, self.hop_length, self.center = n_fft, hop_length, center
        self.win_length = win_length or n_fft
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        fb = torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max))
        self.register_buffer("fb", fb, persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wav.float(), self.n_fft, self.hop_length, self.win_length, self.window,
                          center=self.center, pad_mode="reflect" if self.center else "constant",
                          return_complex=True)
        mag = spec.abs()
        mel = torch.matmul(self.fb, mag)
        return torch.log(torch.clamp(mel, min=1e-5))
