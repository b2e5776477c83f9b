"""Tiny real shards for the data tests (also imported by the torchrun check script)."""
from pathlib import Path

import numpy as np

from llmtts.audio import encode_flac
from llmtts.data.shards import ShardWriter, build_index, shard_name, write_index

SR = 8000


def write_test_shards(out: Path, n_shards: int, per_shard: int, split: str = "train", codes: bool = True,
                      seed: int = 0) -> tuple[Path, list[str]]:
    """Shards whose sample i has 100 * (1 + i % 7) samples of a sine, json text 'sample i', codes [i]."""
    rng = np.random.default_rng(seed)
    keys, summaries = [], []
    i = 0
    for s in range(n_shards):
        rel = f"{split}/{shard_name(s)}"
        with ShardWriter(out / rel, rel_path=rel, split=split) as w:
            for _ in range(per_shard):
                n = 100 * (1 + i % 7)
                wav = (0.3 * np.sin(np.arange(n) * 0.05 + rng.uniform(0, 3))).astype(np.float32)
                key = f"s{i:05d}"
                members = {"flac": encode_flac(wav, SR),
                           "json": {"text": f"sample {i}", "speaker": f"spk{i % 2}", "duration_s": n / SR,
                                    "sample_rate": SR}}
                if codes:
                    members["codes.npy"] = np.full((n // 100,), i, dtype=np.int32)
                w.write(key, members)
                keys.append(key)
                i += 1
        summaries.append(w.summary)
    write_index(out, build_index("tokens" if codes else "audio", summaries, sample_rate=SR))
    return out, keys
