"""Audio bytes for the speech endpoint: whole files (wav, pcm, flac, mp3, opus) and streamed pieces (wav, pcm).

All are 16-bit mono at the model's rate (opus: resampled to 48 kHz, a rate Opus has), clipped to [-1, 1].
mp3 and opus come from libsndfile (the ``soundfile`` wheel bundles it with LAME / libopus), so no extra
dependency; they need the whole signal and are refused for streaming, as flac is.
"""
from __future__ import annotations

import base64
import io
import json
import struct

import numpy as np
import soundfile as sf

FORMATS = ("wav", "pcm", "flac", "mp3", "opus")
STREAMABLE = ("wav", "pcm")
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg"}
_SF = {"flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}


def pcm16(wav: np.ndarray) -> bytes:
    """Little-endian int16 samples (OpenAI's ``pcm`` format, at the model's sample rate)."""
    x = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    return np.round(x * 32767.0).astype("<i2").tobytes()


def wav_header(sample_rate: int, n_samples: int | None = None) -> bytes:
    """A 44-byte PCM16 mono header; ``n_samples=None`` (streaming: length unknown) writes the 0xFFFFFFFF sizes
    that players and the OpenAI API use for open-ended wav streams."""
    data = 0xFFFFFFFF if n_samples is None else 2 * n_samples
    riff = 0xFFFFFFFF if n_samples is None else 36 + data
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate,
                                                                          2 * sample_rate, 2, 16)
            + b"data" + struct.pack("<I", data))


def encode(wav: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """A whole file in ``fmt``."""
    if fmt == "pcm":
        return pcm16(wav)
    if fmt == "wav":
        return wav_header(sample_rate, len(wav)) + pcm16(wav)
    x = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    if fmt == "opus" and sample_rate not in (8000, 12000, 16000, 24000, 48000):
        from llmtts.audio import resample

        x, sample_rate = resample(x, sample_rate, 48000).astype(np.float32), 48000
    container, subtype = _SF[fmt]
    buf = io.BytesIO()
    sf.write(buf, x, sample_rate, format=container, subtype=subtype)
    return buf.getvalue()


def sse_event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def sse_delta(wav: np.ndarray) -> bytes:
    """OpenAI's ``speech.audio.delta`` event: base64 pcm16."""
    return sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(pcm16(wav)).decode()})
