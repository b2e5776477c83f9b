"""Run under ``torchrun --nproc_per_node 2``: every rank reads its part of shard dirs given on the command
line (2 DataLoader workers each); rank 0 writes what each rank saw (JSON) to the output path."""
import itertools
import json
import sys

import torch.distributed as dist

from llmtts.data.parallel_map import dist_env
from llmtts.data.reader import ShardLoader, agree_num_batches


def main() -> None:
    import faulthandler; faulthandler.dump_traceback_later(90, exit=True)  # never hang CI
    out_path, dirs = sys.argv[1], sys.argv[2:]
    dist.init_process_group("gloo")
    rank, world = dist_env()
    assert (rank, world) == (dist.get_rank(), dist.get_world_size())
    report = {}
    for d in dirs:
        kw = dict(length_fn=lambda s: len(s["audio"]), batch_budget=3000, max_batch_size=4, num_workers=2, seed=7)
        finite = ShardLoader(d, "train", rank, world, endless=False, **kw)
        epoch_keys = [s["__key__"] for b in finite for s in b]
        agreed = agree_num_batches(ShardLoader(d, "train", rank, world, endless=False, **kw))
        # Endless training stream: every rank takes the same number of steps, with a collective per step
        # (as DDP's all-reduce would); a rank running dry would hang or raise here.
        endless = ShardLoader(d, "train", rank, world, **kw)
        steps = 0
        for batch in itertools.islice(endless, 25):
            t = __import__("torch").ones(1)
            dist.all_reduce(t)
            steps += 1
        gathered = [None] * world
        dist.all_gather_object(gathered, {"keys": epoch_keys, "agreed": agreed, "steps": steps})
        report[d] = gathered
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(report, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
