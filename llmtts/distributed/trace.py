"""Opt-in debug records of who ran where and which samples each rank read, for multi-node tests.

Set ``LLMTTS_TRACE_DIR=/some/dir`` and every rank writes ``rank_XXXXX.json`` (global rank, world size,
local rank, torchrun's node rank ``GROUP_RANK``, host, pid) at trainer start, and the shard reader appends
one line per batch it hands to the trainer (``keys_rankXXXXX_slotS.jsonl``: epoch, batch number, sample
keys). Unset (the default), nothing is written and nothing changes: the records are for tests and for
debugging a sharding question on a real cluster, not a log.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from llmtts.io import write_json_atomic

ENV = "LLMTTS_TRACE_DIR"


def _dir() -> Path | None:
    d = os.environ.get(ENV)
    return Path(d) if d else None


def record_rank(rank: int, world_size: int, local_rank: int) -> None:
    d = _dir()
    if d is None:
        return
    d.mkdir(parents=True, exist_ok=True)
    env = os.environ
    write_json_atomic(d / f"rank_{rank:05d}.json", {
        "rank": rank, "world_size": world_size, "local_rank": local_rank,
        "node_rank": int(env["GROUP_RANK"]) if "GROUP_RANK" in env else None,
        "env_rank": env.get("RANK"), "env_local_rank": env.get("LOCAL_RANK"),
        "host": socket.gethostname(), "pid": os.getpid(), "tag": env.get("LLMTTS_TRACE_TAG")})


def record_batch(rank: int, slot: int, epoch: int, batch: int, keys: list[str]) -> None:
    d = _dir()
    if d is None:
        return
    d.mkdir(parents=True, exist_ok=True)
    # One small append per batch from one process per (rank, slot) file: no interleaving to guard against.
    with open(d / f"keys_rank{rank:05d}_slot{slot}.jsonl", "a") as f:
        f.write(json.dumps({"epoch": epoch, "batch": batch, "keys": keys}) + "\n")
