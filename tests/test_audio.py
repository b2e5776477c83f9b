"""The Slaney mel filterbank (transformers' mel_filter_bank) against the formula it replaced."""
from __future__ import annotations

import numpy as np
import pytest

from llmtts.audio import mel_filterbank


def _slaney_reference(sample_rate, n_fft, n_mels, f_min, f_max):
    """librosa's ``filters.mel(htk=False, norm="slaney")``, written out: the hand-written filterbank this project
    used before (linear mel below 1 kHz, log above; each triangle scaled to unit area)."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                        f / f_sp)

    def mel_to_hz(m):
        return np.where(m >= min_log_hz / f_sp, min_log_hz * np.exp(logstep * (m - min_log_hz / f_sp)), f_sp * m)

    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    pts = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    ramps = pts[:, None] - fft_freqs[None, :]
    lower, upper = -ramps[:-2] / np.diff(pts)[:-1, None], ramps[2:] / np.diff(pts)[1:, None]
    return np.maximum(0, np.minimum(lower, upper)) * (2.0 / (pts[2:] - pts[:-2]))[:, None]


@pytest.mark.parametrize("sr,n_fft,n_mels,f_min,f_max", [
    (16000, 1024, 80, 0.0, None), (24000, 1024, 100, 0.0, None), (32000, 2048, 128, 0.0, None),
    (22050, 512, 80, 20.0, 8000.0), (16000, 400, 80, 0.0, 8000.0)])
def test_mel_filterbank_is_slaney(sr, n_fft, n_mels, f_min, f_max):
    fb = mel_filterbank(sr, n_fft, n_mels, f_min, f_max)
    ref = _slaney_reference(sr, n_fft, n_mels, f_min, f_max or sr / 2)
    assert fb.shape == (n_mels, n_fft // 2 + 1) and fb.dtype == np.float32
    assert np.abs(fb - ref).max() <= 1e-6 * np.abs(ref).max()  # float32 rounding of the same filters
    assert (fb.max(axis=1) > 0).all()  # no empty filter at these sizes
