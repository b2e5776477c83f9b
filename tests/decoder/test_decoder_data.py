"""Decoder training crops: token-aligned, deterministic per (seed, key), and utterance edges over-sampled."""
from __future__ import annotations

import numpy as np

from llmtts.decoder.data import CropTokens


def _sample(key: int, total: int, spt: int = 4, d: int = 3) -> dict:
    hidden = np.arange(total * d, dtype=np.float32).reshape(total, d)
    return {"__key__": f"k{key}", "__seed__": key, "sample_rate": 16000, "audio": np.arange(total * spt, dtype=np.float32),
            "hidden": hidden}


def test_crops_are_aligned_deterministic_and_favour_the_edges():
    crop, total = 16, 50
    tf = CropTokens(samples_per_token=4, sample_rate=16000, crop_tokens=crop, hidden_size=3, mode="hidden", seed=7)
    starts = []
    for key in range(4000):
        item = tf(_sample(key, total))["item"]
        assert item.n == crop and 0 <= item.start <= total - crop
        assert np.array_equal(item.hidden[:, 0] // 3, np.arange(item.start, item.start + crop))  # states...
        assert np.array_equal(item.audio, np.arange(item.start * 4, (item.start + crop) * 4))  # ...match audio
        starts.append(item.start)
    assert tf(_sample(3, total))["item"].start == starts[3]  # same seed and key: same crop (exact resume)
    counts = np.bincount(starts, minlength=total - crop + 1) / len(starts)
    uniform = 1 / (total - crop + 1)
    # each edge ~ (crop/2 + 1) draws of the widened range; every inner start still drawn ~uniformly
    for edge in (counts[0], counts[-1]):
        assert 6 * uniform < edge < 12 * uniform
    assert np.all(counts[1:-1] > 0.5 * uniform) and np.all(counts[1:-1] < 1.6 * uniform)


def test_evaluation_crops_start_at_the_beginning_and_short_clips_are_whole():
    tf = CropTokens(4, 16000, 16, 3, "hidden", seed=0, random=False)
    assert tf(_sample(1, 50))["item"].start == 0
    tf = CropTokens(4, 16000, 16, 3, "hidden", seed=0)
    item = tf(_sample(2, 10))["item"]
    assert item.start == 0 and item.n == 10
