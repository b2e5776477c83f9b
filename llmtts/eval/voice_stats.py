"""Two numbers that tell voices apart: mean F0 (pitch) and mean spectral centroid (brightness / timbre).

Used to check that a multi-speaker model's speaker token changes the voice the way the training voices differ
(docs/results.md, two voices). F0 is the YIN estimator (de Cheveigne & Kawahara 2002: cumulative-mean-normalised
difference function, absolute threshold 0.15, else the deepest dip if under 0.35, parabolic refinement), written here in numpy because librosa (whose
pyin would do) is not a dependency and pulls numba in for this one number. Both measures use only the frames of
speech: frames more than 35 dB below the clip's loudest frame are skipped, so pauses do not count.
"""
from __future__ import annotations

import numpy as np

from llmtts.audio import resample

SR = 16000
FRAME, HOP = 640, 160  # 40 ms windows (two periods of a 50 Hz voice), 10 ms hop
F0_MIN, F0_MAX = 60.0, 400.0
YIN_THRESHOLD = 0.15
UNVOICED = 0.35  # a frame whose deepest dip stays above this is unvoiced (breathy or noisy)
SILENCE_DB = 35.0


def _frames(wav: np.ndarray, length: int) -> np.ndarray:
    n = 1 + max(0, (len(wav) - length) // HOP)
    wav = np.pad(wav, (0, max(0, length - len(wav))))
    idx = np.arange(length)[None, :] + HOP * np.arange(n)[:, None]
    return wav[idx]


def _speech_mask(frames: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(frames[:, :FRAME] ** 2, axis=1) + 1e-12)
    return 20 * np.log10(rms / rms.max()) > -SILENCE_DB


def f0_track(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """F0 in Hz of each voiced speech frame (10 ms hop); unvoiced and silent frames are left out."""
    wav = resample(np.asarray(wav, np.float32).reshape(-1), sample_rate, SR).astype(np.float64)
    lag_min, lag_max = int(SR / F0_MAX), int(SR / F0_MIN)
    frames = _frames(wav, FRAME + lag_max + 1)
    frames = frames[_speech_mask(frames)]
    if not len(frames):
        return np.zeros(0)
    base = frames[:, :FRAME]
    diff = np.empty((len(frames), lag_max + 2))
    diff[:, 0] = 0.0
    for lag in range(1, lag_max + 2):  # d(lag) = sum (x_j - x_{j+lag})^2 over the window
        diff[:, lag] = np.sum((base - frames[:, lag:lag + FRAME]) ** 2, axis=1)
    cum = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * np.arange(1, lag_max + 2) / np.maximum(cum, 1e-12)
    out = []
    for row in cmnd:
        below = np.nonzero(row[lag_min:lag_max] < YIN_THRESHOLD)[0]
        # YIN's fallback: no dip under the threshold -> the deepest one, if it is still clearly periodic
        lag = lag_min + int(below[0] if below.size else np.argmin(row[lag_min:lag_max]))
        if row[lag] >= UNVOICED:
            continue  # no clear period: unvoiced
        while lag + 1 < lag_max and row[lag + 1] < row[lag]:  # walk down to the dip's minimum
            lag += 1
        a, b, c = row[lag - 1], row[lag], row[lag + 1]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) > 0 else 0.0
        out.append(SR / (lag + shift))
    return np.asarray(out)


def spectral_centroid(wav: np.ndarray, sample_rate: int, n_fft: int = 1024) -> float:
    """Mean over speech frames of the magnitude-weighted mean frequency (Hz), at 16 kHz (the tiny codec's rate)."""
    wav = resample(np.asarray(wav, np.float32).reshape(-1), sample_rate, SR).astype(np.float64)
    frames = _frames(wav, n_fft)
    frames = frames[_speech_mask(frames)]
    mag = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / SR)
    per_frame = (mag @ freqs) / np.maximum(mag.sum(axis=1), 1e-12)
    return float(per_frame.mean()) if len(per_frame) else float("nan")


def voice_stats(wav: np.ndarray, sample_rate: int) -> dict:
    """``{"f0_mean", "f0_median", "voiced_fraction", "centroid"}`` of one clip (F0 NaN when nothing is voiced)."""
    f0 = f0_track(wav, sample_rate)
    n_speech = max(1, int(_speech_mask(_frames(resample(np.asarray(wav, np.float32).reshape(-1), sample_rate, SR)
                                                .astype(np.float64), FRAME + int(SR / F0_MIN) + 1)).sum()))
    return {"f0_mean": float(f0.mean()) if f0.size else float("nan"),
            "f0_median": float(np.median(f0)) if f0.size else float("nan"),
            "voiced_fraction": round(f0.size / n_speech, 3), "centroid": spectral_centroid(wav, sample_rate)}
