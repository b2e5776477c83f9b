import io
import itertools
import tarfile
from collections import Counter

import numpy as np
import pytest

from llmtts.data.reader import ShardLoader, agree_num_batches, assign_shards, bucket_batches
from llmtts.errors import UserError
from llmtts.train.config import DataConfig


def keys_of(batch):
    return [s["__key__"] for s in batch]


def loader(shard_dir, rank=0, world=1, **kw):
    args = dict(length_fn=lambda s: len(s["audio"]), batch_budget=2000, max_batch_size=4, seed=3, shuffle_buffer=8)
    args.update(kw)
    return ShardLoader(shard_dir, "train", rank, world, **args)


@pytest.mark.parametrize("n_shards", [1, 3, 4, 5])
def test_assignment_covers_every_shard_once_and_rotates(n_shards):
    for epoch in range(6):
        slots = assign_shards(n_shards, 4, epoch, seed=1)
        assert sorted(itertools.chain(*slots)) == list(range(n_shards))
    # every slot gets data within any 4 consecutive epochs, even with a single shard
    for slot in range(4):
        assert any(assign_shards(n_shards, 4, e, seed=1)[slot] for e in range(4))


def test_one_epoch_exactly_once_over_ranks_and_workers(make_shards):
    shard_dir, keys = make_shards(3, 7)
    seen = Counter()
    for rank in range(2):
        ld = loader(shard_dir, rank, 2, num_workers=2, endless=False)
        for batch in ld:
            seen.update(keys_of(batch))
    assert seen == Counter(keys)


def test_batches_respect_budget_and_are_length_bucketed(make_shards):
    shard_dir, keys = make_shards(2, 20)
    batches = list(loader(shard_dir, endless=False, batch_budget=1500, max_batch_size=3, shuffle_buffer=1))
    assert sum(len(b) for b in batches) == len(keys)
    for b in batches:
        lengths = [len(s["audio"]) for s in b]
        assert len(b) <= 3 and len(b) * max(lengths) <= 1500
    # bucketing: within a bucket, batches hold neighbouring lengths (sorted pool)
    spreads = [max(len(s["audio"]) for s in b) - min(len(s["audio"]) for s in b) for b in batches]
    assert np.mean(spreads) <= 200


def test_decoded_fields_and_selection(make_shards):
    shard_dir, _ = make_shards(1, 3)
    s = next(iter(loader(shard_dir, endless=False)))[0]
    assert s["audio"].dtype == np.float32 and s["sample_rate"] == 8000
    assert s["codes"].dtype == np.int32 and s["json"]["text"].startswith("sample ")
    only_codes = next(iter(loader(shard_dir, endless=False, fields=["codes"], length_fn=lambda s: len(s["codes"]))))[0]
    assert "audio" not in only_codes and "codes" in only_codes


def test_collate_fn_runs_on_batches(make_shards):
    shard_dir, _ = make_shards(1, 6)
    ld = loader(shard_dir, endless=False, collate_fn=lambda items: len(items), num_workers=1)
    assert sum(ld) == 6


def test_corrupt_members_are_skipped_and_counted(make_shards, tmp_path):
    shard_dir, keys = make_shards(2, 5)
    # Rewrite shard 0 with one corrupt flac, one corrupt json, one sample missing its json.
    path = shard_dir / "train" / "shard-000000.tar"
    with tarfile.open(path) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    with tarfile.open(path, "w") as tf:
        for m, data in members:
            if m.name == "s00000.flac":
                data = b"not a flac at all"
            elif m.name == "s00001.json":
                data = b"{broken"
            elif m.name == "s00002.json":
                continue
            m.size = len(data)
            tf.addfile(m, io.BytesIO(data))
    ld = loader(shard_dir, endless=False)
    got = sorted(k for b in ld for k in keys_of(b))
    assert got == sorted(set(keys) - {"s00000", "s00001", "s00002"})
    st = ld.stats
    assert (st["bad_flac"], st["bad_json"], st["missing_json"], st["samples"]) == (1, 1, 1, 7)


def test_truncated_shard_keeps_its_complete_samples(make_shards):
    shard_dir, keys = make_shards(2, 6)
    path = shard_dir / "train" / "shard-000001.tar"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    ld = loader(shard_dir, endless=False)
    got = sorted(k for b in ld for k in keys_of(b))
    assert got[:6] == keys[:6]  # the intact shard is complete
    assert 6 < len(got) < 12  # the complete samples before the cut survive
    assert sum(v for k, v in ld.stats.items() if k not in ("samples", "batches")) >= 1


def test_over_budget_items_are_skipped(make_shards):
    shard_dir, keys = make_shards(1, 7)  # lengths 100..700
    ld = loader(shard_dir, endless=False, batch_budget=450)
    got = [k for b in ld for k in keys_of(b)]
    assert len(got) == 4 and ld.stats["over_budget"] == 3


def test_resume_gives_the_same_remaining_batches(make_shards):
    shard_dir, _ = make_shards(3, 9)
    kw = dict(num_workers=2, endless=True)
    ref = loader(shard_dir, **kw)
    it = iter(ref)
    for _ in range(7):  # mid-epoch, odd count so the next batch is due from worker 1
        next(it)
    state = ref.state_dict()
    expected = [keys_of(next(it)) for _ in range(12)]  # runs into the next epoch
    resumed = loader(shard_dir, **kw)
    resumed.load_state_dict(state)
    got = [keys_of(b) for b in itertools.islice(resumed, 12)]
    assert got == expected
    assert state["next_worker"] == 1


def test_resume_in_process_mode_and_epochs_differ(make_shards):
    shard_dir, keys = make_shards(2, 6)
    ref = loader(shard_dir)
    first_epoch = list(itertools.islice(iter(ref), 200))
    flat = [k for b in first_epoch for k in keys_of(b)]
    assert Counter(flat[: len(keys)]) == Counter(keys)  # epoch 0 is exactly the data set
    assert flat[: len(keys)] != flat[len(keys): 2 * len(keys)]  # epoch 1 is reshuffled
    ld = loader(shard_dir)
    it = iter(ld)
    next(it), next(it)
    st = ld.state_dict()
    again = loader(shard_dir)
    again.load_state_dict(st)
    assert [keys_of(b) for b in itertools.islice(again, 5)] == [keys_of(b) for b in itertools.islice(it, 5)]


def test_foreign_state_starts_next_epoch(make_shards):
    shard_dir, _ = make_shards(2, 4)
    a = loader(shard_dir)
    it = iter(a)
    next(it)
    st = a.state_dict()
    b = loader(shard_dir, num_workers=2)  # different layout
    b.load_state_dict(st)
    assert {v["epoch"] for v in b.state_dict()["slots"].values()} == {1}


def test_endless_ranks_never_run_dry_with_uneven_shards(make_shards):
    shard_dir, _ = make_shards(3, 4)  # 3 shards over 2 ranks x 2 workers: one slot empty per epoch
    for rank in range(2):
        got = list(itertools.islice(loader(shard_dir, rank, 2, num_workers=2), 30))
        assert len(got) == 30


def test_finite_batches_agreement_and_config(make_shards):
    shard_dir, _ = make_shards(3, 5)
    cfg = DataConfig(batch_budget=2000, max_batch_size=4, shuffle_buffer=4, num_workers=0, seed=1)
    ld = ShardLoader.from_config(shard_dir, "train", 0, 1, cfg, length_fn=lambda s: len(s["audio"]), endless=False)
    assert agree_num_batches(ld) == len(list(ld)) > 0


def test_bad_arguments_fail_clearly(make_shards, tmp_path):
    shard_dir, _ = make_shards(1, 2)
    with pytest.raises(UserError, match="no shards for split 'val'"):
        ShardLoader(shard_dir, "val", 0, 1, length_fn=len, batch_budget=10, max_batch_size=2)
    with pytest.raises(UserError, match="rank 2 is outside world_size 2"):
        ShardLoader(shard_dir, "train", 2, 2, length_fn=len, batch_budget=10, max_batch_size=2)


def test_unreadable_data_does_not_spin_forever(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "shard-000000.tar").write_bytes(b"garbage" * 100)
    ld = ShardLoader(tmp_path, "train", 0, 1, length_fn=len, batch_budget=10, max_batch_size=2)
    with pytest.raises(UserError, match="no usable samples"):
        next(iter(ld))


def test_bucket_batches_unit():
    items = list(range(1, 21))
    batches = list(bucket_batches(items, float, batch_budget=30, max_batch_size=4, bucket_size=10, rng=None))
    assert sorted(itertools.chain(*batches)) == items
    assert all(len(b) * max(b) <= 30 and len(b) <= 4 for b in batches)


def test_samples_carry_a_resume_stable_seed(make_shards):
    shard_dir, _ = make_shards(2, 3)
    def seeds(ld):
        return {s["__key__"]: (s["__epoch__"], s["__seed__"]) for b in itertools.islice(ld, 6) for s in b}
    a, b = seeds(loader(shard_dir)), seeds(loader(shard_dir, num_workers=2))
    common = set(a) & set(b)
    assert common and all(a[k] == b[k] for k in common if a[k][0] == b[k][0])
    assert len({v[1] for v in a.values()}) == len(a)


def test_hidden_members_decode_and_bad_npy_is_counted(tmp_path):
    from llmtts.data.shards import ShardWriter
    with ShardWriter(tmp_path / "train" / "shard-000000.tar") as w:
        for i in range(3):
            w.write(f"h{i}", {"json": {"n_tokens": 2 + i}, "codes.npy": np.arange(2 + i, dtype=np.int16),
                              "hidden.npy": np.full((2 + i, 4), i, np.float16)})
        w.write("bad", {"json": {"n_tokens": 1}, "codes.npy": np.zeros(1, np.int16), "hidden.npy": b"\x93NUMPY junk"})
    ld = ShardLoader(tmp_path, "train", 0, 1, length_fn=lambda s: len(s["hidden"]), batch_budget=100,
                     max_batch_size=8, fields=["hidden", "codes"], endless=False)
    got = {s["__key__"]: s for b in ld for s in b}
    assert sorted(got) == ["h0", "h1", "h2"]
    assert got["h2"]["hidden"].dtype == np.float16 and got["h2"]["hidden"].shape == (4, 4)
    assert float(got["h2"]["hidden"][0, 0]) == 2.0 and len(got["h1"]["codes"]) == 3
    assert ld.stats["bad_hidden_npy"] == 1
