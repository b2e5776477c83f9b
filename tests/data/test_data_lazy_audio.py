"""LazyAudio (the ``audio_crop`` field): a crop read by seeking is the same samples as the whole clip decoded."""
import io

import numpy as np
import pytest
import soundfile as sf

from llmtts.data.reader import BadFlac, LazyAudio, _read_flac, decode_sample


def flac_bytes(wav: np.ndarray, sr: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format="FLAC", subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize("channels,subtype", [(1, "PCM_16"), (2, "PCM_16"), (1, "PCM_24")])
def test_slices_equal_the_full_decode(channels, subtype):
    rng = np.random.default_rng(0)
    n = 5 * 16000 + 123  # several FLAC blocks, an odd tail
    wav = (0.3 * rng.standard_normal((n, channels))).clip(-1, 1).astype(np.float32).squeeze()
    data = flac_bytes(wav, subtype=subtype)
    full, sr = _read_flac(data)
    full = full.mean(axis=1) if full.ndim == 2 else full
    lazy = LazyAudio(data)
    assert len(lazy) == n and lazy.sample_rate == sr == 16000
    # Random and edge windows, in a random order (seeks go backwards as well as forwards).
    windows = [(0, 16000), (n - 777, n), (n - 10, n + 50), (4095, 4097)]
    windows += [tuple(sorted(rng.integers(0, n, 2))) for _ in range(20)]
    for a, b in windows:
        got = lazy[a:b]
        assert got.dtype == np.float32 and got.ndim == 1
        np.testing.assert_array_equal(got, full[a:b].astype(np.float32))


def test_decode_sample_gives_a_lazy_clip_and_counts_a_bad_header():
    wav = np.sin(np.arange(8000) / 10).astype(np.float32) * 0.5
    raw = {"__key__": "k", "json": b'{"text": "x"}', "flac": flac_bytes(wav)}
    out, reason = decode_sample(raw, ["audio_crop"])
    assert reason is None and isinstance(out["audio"], LazyAudio) and out["sample_rate"] == 16000
    out, reason = decode_sample({**raw, "flac": b"not a flac at all"}, ["audio_crop"])
    assert out is None and reason == "bad_flac"


def test_frames_cut_off_raise_bad_flac_on_read():
    rng = np.random.default_rng(1)
    data = flac_bytes((0.3 * rng.standard_normal(48000)).astype(np.float32))
    lazy = LazyAudio(data[: len(data) // 3])  # the header still says 48000 frames
    assert len(lazy[0:1000]) == 1000  # the frames that are there still read
    with pytest.raises(BadFlac):  # a decode error or a short read, never a short array
        lazy[40000:48000]
