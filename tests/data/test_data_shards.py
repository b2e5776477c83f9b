import io
import json
import tarfile

import numpy as np
import pytest

from llmtts.data.parallel_map import dist_env, iter_shard, map_shards
from llmtts.data.shards import ShardSetWriter, ShardWriter, build_index, list_shards, read_index, write_index
from llmtts.errors import UserError


def test_writer_is_atomic_and_byte_identical(tmp_path):
    def write(path):
        with ShardWriter(path) as w:
            assert w.tmp_path.exists() and not path.exists()  # readers never see a partial shard
            w.write("a-1", {"json": {"text": "x", "duration_s": 1.5, "speaker": "s"},
                            "codes.npy": np.arange(4, dtype=np.int16), "hidden.npy": np.ones((2, 3), np.float16)})
        return path.read_bytes()
    assert write(tmp_path / "one.tar") == write(tmp_path / "two.tar")
    with tarfile.open(tmp_path / "one.tar") as tf:
        names = tf.getnames()
        codes = np.load(io.BytesIO(tf.extractfile("a-1.codes.npy").read()))
    assert names == ["a-1.codes.npy", "a-1.hidden.npy", "a-1.json"]
    assert codes.dtype == np.int16 and codes.tolist() == [0, 1, 2, 3]
    assert not (tmp_path / "one.tar.tmp").exists()


def test_writer_discards_on_error_and_rejects_bad_keys(tmp_path):
    path = tmp_path / "x.tar"
    with pytest.raises(RuntimeError):
        with ShardWriter(path) as w:
            w.write("k", {"json": {}})
            raise RuntimeError("boom")
    assert not path.exists() and not (tmp_path / "x.tar.tmp").exists()
    with ShardWriter(path) as w:
        with pytest.raises(UserError, match="sample key 'a.b'"):
            w.write("a.b", {"json": {}})
        w.write("ok", {"json": {}})
        with pytest.raises(UserError, match="duplicate sample key 'ok'"):
            w.write("ok", {"json": {}})


def test_index_totals_add_up(tmp_path):
    sw = ShardSetWriter(tmp_path, "train", samples_per_shard=2)
    for i in range(5):
        sw.write(f"k{i}", {"json": {"duration_s": 1.0 + i, "speaker": f"s{i % 2}"}})
    summaries = sw.close()
    summaries[0].rejected["too_short"] = 2
    index = build_index("audio", summaries, rejected={"bad_metadata": 1}, sample_rate=16000)
    write_index(tmp_path, index)
    back = read_index(tmp_path)
    assert [s["num_samples"] for s in back["shards"]] == [2, 2, 1]
    assert back["totals"] == {"num_shards": 3, "num_samples": 5, "seconds": 15.0}
    assert back["speakers"] == {"s0": {"num_samples": 3, "seconds": 9.0}, "s1": {"num_samples": 2, "seconds": 6.0}}
    assert back["rejected"] == {"bad_metadata": 1, "too_short": 2} and back["num_rejected"] == 3
    assert back["kind"] == "audio" and back["sample_rate"] == 16000


def test_read_index_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="no index.json"):
        read_index(tmp_path)
    (tmp_path / "index.json").write_text("{")
    with pytest.raises(UserError, match="index.json: invalid JSON"):
        read_index(tmp_path)


def test_dist_env_reads_torchrun_then_slurm():
    assert dist_env({}) == (0, 1)
    assert dist_env({"RANK": "1", "WORLD_SIZE": "4", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}) == (1, 4)
    assert dist_env({"SLURM_PROCID": "2", "SLURM_NTASKS": "3"}) == (2, 3)
    with pytest.raises(UserError, match="RANK=5 is outside WORLD_SIZE=2"):
        dist_env({"RANK": "5", "WORLD_SIZE": "2"})


def _tokenize(calls):
    def fn(in_path, writer):
        calls.append(in_path.name)
        skipped = 0
        for s in iter_shard(in_path, fields=["audio"]):
            if s["__key__"].endswith("3"):
                skipped += 1
                continue
            meta = dict(s["json"], n_tokens=len(s["audio"]) // 100)
            writer.write(s["__key__"], {"json": meta, "codes.npy": np.zeros(meta["n_tokens"], np.int16)})
        return {"odd_key": skipped}
    return fn


def test_map_shards_splits_by_rank_resumes_and_indexes(make_shards, tmp_path):
    src, keys = make_shards(5, 4)
    out = tmp_path / "tok"
    calls = {0: [], 1: []}
    assert map_shards(src, out, _tokenize(calls[1]), kind="tokens", rank=1, world_size=2, progress=False) is None
    index = map_shards(src, out, _tokenize(calls[0]), kind="tokens", rank=0, world_size=2, progress=False,
                       extra_index={"samples_per_token": 100})
    assert calls == {0: ["shard-000000.tar", "shard-000002.tar", "shard-000004.tar"],
                     1: ["shard-000001.tar", "shard-000003.tar"]}
    expected = [k for k in keys if not k.endswith("3")]
    assert index["totals"]["num_samples"] == len(expected)
    assert index["rejected"] == {"odd_key": len(keys) - len(expected)}
    assert index["kind"] == "tokens" and index["samples_per_token"] == 100 and index["source_kind"] == "tokens"
    got = sorted(s["__key__"] for p in sorted((out / "train").glob("*.tar")) for s in iter_shard(p, fields=["codes"]))
    assert got == expected
    # A re-run skips finished shards; a lost output shard is redone.
    (out / "train" / "shard-000002.tar").unlink()
    again = []
    map_shards(src, out, _tokenize(again), kind="tokens", rank=0, world_size=2, progress=False)
    assert again == ["shard-000002.tar"]
    assert json.loads((out / "index.json").read_text())["totals"] == index["totals"]


def test_map_shards_rank0_times_out_when_a_rank_is_missing(make_shards, tmp_path):
    src, _ = make_shards(2, 2)
    with pytest.raises(UserError, match="1 shard\\(s\\) still unfinished"):
        map_shards(src, tmp_path / "o", _tokenize([]), kind="tokens", rank=0, world_size=2, progress=False,
                   wait_timeout_s=0.2, poll_s=0.05)


@pytest.mark.parametrize("bad", ["../victim/shard.tar", "/tmp/victim/shard.tar", "train/../../victim/shard.tar"])
def test_index_shard_paths_must_stay_inside_the_folder(make_shards, tmp_path, bad):
    """A hostile index.json must not make readers or writers leave the shard folder."""
    src, _ = make_shards(1, 2)
    index = json.loads((src / "index.json").read_text())
    index["shards"][0]["path"] = bad
    (src / "index.json").write_text(json.dumps(index))
    for call in (lambda: read_index(src), lambda: list_shards(src, "train"),
                 lambda: map_shards(src, tmp_path / "o", _tokenize([]), kind="tokens", progress=False)):
        with pytest.raises(UserError, match="index.json: shard path .* leaves the shard folder") as err:
            call()
        assert repr(bad) in str(err.value) and len(str(err.value).splitlines()) == 1
    assert not (tmp_path / "o").exists() and not (tmp_path / "victim").exists()
