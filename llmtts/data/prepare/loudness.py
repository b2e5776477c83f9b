"""EBU R128 / ITU-R BS.1770 loudness normalisation with pyloudnorm (K-weighting + gating, the broadcast
standard), so cuts from quiet and loud recordings reach the model at one level."""
from __future__ import annotations

import numpy as np

from llmtts.optional import require

PEAK_LIMIT = 0.97  # about -0.3 dBFS: a normalised cut is scaled down rather than clipped


def measure(wav: np.ndarray, sr: int) -> float:
    """Integrated loudness in LUFS (-inf for silence). Needs at least one 400 ms gating block."""
    pyloudnorm = require("pyloudnorm", "llmtts data prepare")
    return float(pyloudnorm.Meter(sr).integrated_loudness(np.asarray(wav, dtype=np.float64)))


def normalize(wav: np.ndarray, sr: int, target_lufs: float) -> tuple[np.ndarray, float]:
    """(wav at ``target_lufs``, its loudness before). A cut whose peak would pass ``PEAK_LIMIT`` is scaled
    down to it (a plain gain, no limiter: clipping would add distortion the model learns)."""
    before = measure(wav, sr)
    if not np.isfinite(before):
        return wav, before
    out = wav * np.float32(10 ** ((target_lufs - before) / 20))
    peak = float(np.abs(out).max())
    if peak > PEAK_LIMIT:
        out = out * np.float32(PEAK_LIMIT / peak)
    return out.astype(np.float32), before
