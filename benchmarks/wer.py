"""WER/CER alignment speed: ``llmtts.eval.wer.edit_ops`` (jiwer / rapidfuzz) vs the pure-Python Levenshtein DP it
replaced, on one long synthetic transcript (words, then its characters). Both run in the same process; the script
checks they give the same edit count and prints the ratio.

    python benchmarks/wer.py [--words 1500] [--seed 0]
"""
from __future__ import annotations

import argparse
import random
import time

from llmtts.eval.wer import edit_ops


def dp_edits(ref, hyp) -> int:
    prev = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        cur = [i]
        for j in range(1, len(hyp) + 1):
            cur.append(min(prev[j - 1] + (ref[i - 1] != hyp[j - 1]), prev[j] + 1, cur[j - 1] + 1))
        prev = cur
    return prev[-1]


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    ref = [rng.choice(["the", "a", "cat", "dog", "sat", "ran", "on", "mat"]) for _ in range(args.words)]
    hyp = [w if rng.random() > 0.1 else rng.choice(["x", "the", "cat"]) for w in ref]  # ~10% word errors
    edit_ops(ref[:2], hyp[:2])  # import jiwer outside the timing
    for name, r, h in (("words", ref, hyp), ("characters", list(" ".join(ref)), list(" ".join(hyp)))):
        ops, t_new = timed(edit_ops, r, h)
        edits, t_old = timed(dp_edits, r, h)
        assert sum(ops) == edits, (sum(ops), edits)
        print(f"{name:10s} n={len(r):6d} edits={edits:5d}  dp {t_old:8.3f} s  jiwer {t_new:7.4f} s  "
              f"speed-up {t_old / t_new:6.0f}x")


if __name__ == "__main__":
    main()
