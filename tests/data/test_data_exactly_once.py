"""Exactly once in the endless training stream, and across a resume of every rank (docs/data.md, "Split" and
"Resume"): 2 ranks x 2 DataLoader workers, 5 shards for 4 slots (uneven), several epochs.

Over both ranks, each epoch that every slot has finished holds every sample exactly once, and no epoch holds
a sample twice; a rank stopped mid-epoch and resumed from its ``state_dict()`` in a fresh loader (as a new
process would) hands out exactly the batches the uninterrupted stream does, so nothing is lost or repeated.
"""
from collections import Counter, defaultdict
from itertools import islice

from llmtts.data.reader import ShardLoader

WORLD, STEPS = 2, 24
STOP_AT = {0: 7, 1: 10}  # each rank checkpoints at a different point, mid-epoch


def make_loader(shard_dir, rank):
    return ShardLoader(shard_dir, "train", rank, WORLD, length_fn=lambda s: len(s["audio"]), batch_budget=2000,
                       max_batch_size=3, shuffle_buffer=4, num_workers=2, seed=5)


def read(loader, n):
    return [[(s["__epoch__"], s["__key__"]) for s in batch] for batch in islice(loader, n)]


def finished_epochs(loaders) -> int:
    """Epochs below this one are finished by every slot of every rank (a slot that never yielded is at 0)."""
    epochs = []
    for ld in loaders:
        slots = ld.state_dict()["slots"]
        epochs += [slots[str(s)]["epoch"] if str(s) in slots else 0
                   for s in range(ld.spec.rank * 2, ld.spec.rank * 2 + 2)]
    return min(epochs)


def assert_exactly_once(streams, keys, done):
    per_epoch = defaultdict(Counter)
    for batches in streams:
        for batch in batches:
            for epoch, key in batch:
                per_epoch[epoch][key] += 1
    assert done >= 2, "the test should cover at least two whole epochs"
    for epoch, seen in per_epoch.items():
        assert max(seen.values()) == 1, f"epoch {epoch}: samples read twice: {[k for k, n in seen.items() if n > 1]}"
        if epoch < done:
            assert sorted(seen) == sorted(keys), f"epoch {epoch}: missing {sorted(set(keys) - set(seen))}"


def test_endless_stream_and_multi_rank_resume_read_each_sample_once_per_epoch(make_shards):
    shard_dir, keys = make_shards(5, 4)
    loaders = [make_loader(shard_dir, r) for r in range(WORLD)]
    uninterrupted = [read(ld, STEPS) for ld in loaders]
    assert_exactly_once(uninterrupted, keys, finished_epochs(loaders))

    resumed_loaders, resumed = [], []
    for rank in range(WORLD):
        first = make_loader(shard_dir, rank)
        before = read(first, STOP_AT[rank])
        again = make_loader(shard_dir, rank)
        again.load_state_dict(first.state_dict())
        after = read(again, STEPS - STOP_AT[rank])
        assert before + after == uninterrupted[rank], f"rank {rank}: the resumed stream differs"
        resumed.append(before + after)
        resumed_loaders.append(again)
    assert_exactly_once(resumed, keys, finished_epochs(resumed_loaders))
