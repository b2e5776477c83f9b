"""Hidden-state shard formats side by side: bytes per audio second, read throughput, error vs fp16.

    python benchmarks/hidden_formats.py --shards fp16-none=DIR bf16-none=DIR ... [--repeat 5] [--json OUT]

Each DIR is the same token shards dumped by `llmtts llm dump-hidden --hidden-dtype D --compression C` (the
first one is the baseline). Per format: the states' member bytes (payload and with its tar header and
padding) per second of audio, the whole shard folder per audio second, the read rate of one reader process
(``ShardLoader``, in-process, fields=hidden: tar + decode; then audio+hidden, what the decoder stage reads)
in MB/s of member bytes and hidden vectors/s, and the error of the decoded states against the baseline's.
Read passes of all formats are interleaved ``--repeat`` times and the best pass kept (a shared machine).
"""
from __future__ import annotations

import argparse
import json
import tarfile
import time
from pathlib import Path

import numpy as np

from llmtts.data.reader import ShardLoader, hidden_format_of
from llmtts.data.shards import read_index


def member_bytes(root: Path, member: str) -> tuple[int, int]:
    """(payload bytes, bytes in the tar incl. 512-byte header and padding) of every ``KEY.<member>``."""
    payload = in_tar = 0
    for shard in sorted(root.glob("*/*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.split(".", 1)[1] == member:
                    payload += m.size
                    in_tar += 512 + -(-m.size // 512) * 512
    return payload, in_tar


def read_pass(root: Path, fields: list[str]) -> tuple[float, int, int]:
    """(seconds, samples, hidden vectors) of one in-process pass over every split."""
    n = vectors = 0
    t0 = time.perf_counter()
    for split in ("train", "val"):
        ld = ShardLoader(root, split, 0, 1, length_fn=lambda s: 1, batch_budget=64, max_batch_size=64,
                         fields=fields, shuffle_buffer=1, endless=False, shuffle=False)
        for b in ld:
            n += len(b)
            vectors += sum(len(s["hidden"]) for s in b)
    return time.perf_counter() - t0, n, vectors


def states(root: Path) -> dict[str, np.ndarray]:
    out = {}
    for split in ("train", "val"):
        ld = ShardLoader(root, split, 0, 1, length_fn=lambda s: 1, batch_budget=64, max_batch_size=64,
                         fields=["hidden"], shuffle_buffer=1, endless=False, shuffle=False)
        out.update({s["__key__"]: np.asarray(s["hidden"], np.float32) for b in ld for s in b})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", nargs="+", required=True, metavar="NAME=DIR")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    dirs = {k: Path(v) for k, v in (s.split("=", 1) for s in args.shards)}
    base_name = next(iter(dirs))
    base = states(dirs[base_name])
    rows = {}
    for name, root in dirs.items():
        fmt, index = hidden_format_of(root), read_index(root)
        seconds = sum(s["seconds"] for s in index["shards"])
        payload, in_tar = member_bytes(root, fmt.member)
        total = sum(p.stat().st_size for p in root.glob("*/*.tar"))
        got = states(root)
        err = np.concatenate([(got[k] - base[k]).ravel() for k in base])
        ref = np.concatenate([base[k].ravel() for k in base])
        rows[name] = {"format": f"{fmt.dtype}+{fmt.compression}", "member": fmt.member, "audio_s": seconds,
                      "hidden_size": index.get("hidden_size"), "vectors": int(sum(len(v) for v in base.values())),
                      "payload_B_per_audio_s": payload / seconds, "member_in_tar_B_per_audio_s": in_tar / seconds,
                      "shard_B_per_audio_s": total / seconds, "payload_bytes": payload,
                      "rms_err_rel": float(np.sqrt(np.mean(err ** 2)) / np.sqrt(np.mean(ref ** 2))),
                      "max_abs_err": float(np.abs(err).max()), "best_s": {}}
    for _ in range(args.repeat):  # interleaved: every format sees the same machine load
        for name, root in dirs.items():
            for label, fields in (("hidden", ["hidden"]), ("audio+hidden", ["audio", "hidden"])):
                dt, n, vec = read_pass(root, fields)
                best = rows[name]["best_s"]
                best[label] = min(best.get(label, dt), dt)
                rows[name]["samples"], rows[name]["vectors_read"] = n, vec
    for name, r in rows.items():
        for label, dt in r["best_s"].items():
            r[f"read_{label}_MB_s"] = r["payload_bytes"] / dt / 1e6
            r[f"read_{label}_vectors_s"] = r["vectors_read"] / dt
            r[f"read_{label}_audio_s_per_s"] = r["audio_s"] / dt
    b = rows[base_name]
    print(f"{sum(1 for _ in dirs)} formats, {b['vectors']} vectors of d={b['hidden_size']}, {b['audio_s']:.1f} s of "
          f"audio; one reader process, best of {args.repeat} interleaved passes; baseline {base_name}")
    print("| format | member | states B/audio s (payload) | in tar | whole shard B/audio s | vs baseline "
          "| read MB/s (hidden) | vectors/s (hidden) | vectors/s (audio+hidden) | rms err / rms | max abs err |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {r['format']} | `{r['member']}` | {r['payload_B_per_audio_s']:,.0f} | "
              f"{r['member_in_tar_B_per_audio_s']:,.0f} | {r['shard_B_per_audio_s']:,.0f} | "
              f"{r['payload_B_per_audio_s'] / b['payload_B_per_audio_s']:.2f}x | {r['read_hidden_MB_s']:.1f} | "
              f"{r['read_hidden_vectors_s']:,.0f} | {r['read_audio+hidden_vectors_s']:,.0f} | "
              f"{r['rms_err_rel']:.2e} | {r['max_abs_err']:.3g} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
