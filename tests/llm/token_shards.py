"""Real token shards for the LLM tests, written with the data package's shard writer.

Codes are a deterministic function of the text (two codes per character, plus noise-free jitter by
position) so a tiny model can actually learn them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from llmtts.data.shards import ShardSetWriter, build_index, write_index

WORDS = "the a cat dog sat on mat red blue sun hello world quick brown fox jumps over lazy".split()


def codes_for(text: str, n_audio: int) -> np.ndarray:
    out = []
    for i, c in enumerate(text):
        base = (ord(c) * 7) % n_audio
        out += [base, (base + 1 + i % 3) % n_audio]
    return np.asarray(out, dtype=np.int16)


def make_token_shards(root: Path, n_train: int = 12, n_val: int = 4, n_audio: int = 64, seed: int = 0,
                      per_shard: int = 4, multi_codebook: bool = False, extra_bad: bool = False,
                      speakers: tuple[str, ...] = ("spk",)) -> Path:
    rng = np.random.default_rng(seed)
    summaries = []
    for split, n in (("train", n_train), ("val", n_val)):
        w = ShardSetWriter(root, split, per_shard)
        for i in range(n):
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4))))
            codes = codes_for(text, n_audio)
            if multi_codebook:
                codes = np.stack([codes, codes], axis=1)
            meta = {"text": text, "normalized_text": text, "speaker": speakers[i % len(speakers)], "duration_s": len(codes) / 15.625,
                    "sample_rate": 16000, "source": "test", "n_tokens": len(codes), "samples_per_token": 1024,
                    "num_samples": len(codes) * 1024}
            w.write(f"{split}_{i:04d}", {"json": meta, "codes.npy": codes, "flac": b"not-read-by-the-llm"})
        if extra_bad and split == "train":
            w.write("bad_codes", {"json": {"normalized_text": "x", "duration_s": 1.0},
                                  "codes.npy": np.asarray([n_audio + 5], dtype=np.int16), "flac": b""})
            w.write("no_text", {"json": {"duration_s": 1.0}, "codes.npy": np.asarray([1, 2], dtype=np.int16),
                                "flac": b""})
        summaries += w.close()
    write_index(root, build_index("tokens", summaries, codebook_size=n_audio, num_codebooks=1,
                                  samples_per_token=1024, sample_rate=16000))
    return root
