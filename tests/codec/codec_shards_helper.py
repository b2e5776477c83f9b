"""Real WebDataset audio shards of synthetic voiced clips (at 22.05 kHz, so readers must resample)."""
import math
from pathlib import Path

import numpy as np

from llmtts.audio import encode_flac
from llmtts.data.shards import ShardWriter, build_index, write_index


def voiced_clip(n: int, sr: int, f0: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    pitch = f0 + 30 * np.sin(2 * math.pi * 2.5 * t + seed)
    phase = 2 * math.pi * np.cumsum(pitch) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 10)) * (0.5 + 0.5 * np.sin(2 * math.pi * 3 * t))
    return (0.2 * wav + 0.003 * rng.standard_normal(n)).astype(np.float32)


def write_audio_shards(root: Path, layout: dict[str, list[int]], sr: int = 22050,
                       corrupt: set[str] = frozenset()) -> Path:
    """``layout``: split -> samples per shard. Keys in ``corrupt`` get garbage FLAC bytes."""
    summaries, n = [], 0
    for split, counts in layout.items():
        for i, count in enumerate(counts):
            rel = f"{split}/shard-{i:06d}.tar"
            with ShardWriter(root / rel, rel_path=rel, split=split) as w:
                for _ in range(count):
                    key = f"utt{n:04d}"
                    length = int(sr * (0.4 + 0.15 * (n % 5)))
                    wav = voiced_clip(length, sr, 100 + 10 * (n % 7), n)
                    flac = b"not a flac file at all" if key in corrupt else encode_flac(wav, sr)
                    w.write(key, {"flac": flac, "json": {"text": f"clip {n}", "normalized_text": f"clip {n}",
                                                         "speaker": "synth", "duration_s": length / sr,
                                                         "sample_rate": sr, "source": "test"}})
                    n += 1
            summaries.append(w.summary)
    write_index(root, build_index("audio", summaries, sample_rate=sr))
    return root


