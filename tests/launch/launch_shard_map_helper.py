"""A stand-in for `codec encode` / `llm dump-hidden`: a shard -> shard map over ranks with
``llmtts.data.parallel_map.map_shards`` (no process group), recording which rank took which shard.

    python -m launch_shard_map_helper IN_DIR OUT_DIR
"""
import os
import sys
from pathlib import Path

from llmtts.data.parallel_map import iter_shard, map_shards


def copy_json(in_tar: Path, writer) -> None:
    for sample in iter_shard(in_tar, fields=[]):
        writer.write(sample["__key__"], {"json": {**sample["json"], "rank": int(os.environ["RANK"]),
                                                  "world_size": int(os.environ["WORLD_SIZE"])}})


if __name__ == "__main__":
    map_shards(sys.argv[1], sys.argv[2], copy_json, kind="tokens", progress=False, poll_s=0.2, wait_timeout_s=120)
