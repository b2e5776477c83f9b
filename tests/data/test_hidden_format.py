"""Hidden-state shard formats: each round trip stays within its format's bound, the index says which format,
the reader decodes it transparently, and an unknown format is a one-line error."""
import json

import numpy as np
import pytest
import torch

from llmtts.data.hidden_format import COMPRESSIONS, DTYPES, HiddenFormat
from llmtts.data.reader import ShardLoader
from llmtts.data.shards import ShardWriter, build_index, write_index
from llmtts.errors import UserError

FORMATS = [(d, c) for d in DTYPES for c in COMPRESSIONS]


def states(t=40, d=48, seed=0):
    """LLM-like states: rows of different scale, a few large channels, one all-zero row."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((t, d)).astype(np.float32) * rng.uniform(0.05, 8.0, (t, 1)).astype(np.float32)
    x[:, 3] *= 20
    x[5] = 0
    return x


def bound(x, dtype):
    """Largest |error| per value each format promises."""
    if dtype == "fp16":
        return np.abs(x) * 2.0 ** -11 + 2.0 ** -25
    if dtype == "bf16":
        return np.abs(x) * 2.0 ** -8
    peak = np.abs(x).max(axis=1, keepdims=True)
    return np.broadcast_to(peak / 127 * (1 + 2.0 ** -10) / 2, x.shape)  # half a step of the fp16-rounded-up scale


@pytest.mark.parametrize("dtype,comp", FORMATS)
def test_round_trip_within_bound(dtype, comp):
    x = states()
    fmt = HiddenFormat(dtype, comp)
    y = fmt.decode(fmt.encode(x)).astype(np.float32)
    assert y.shape == x.shape
    err = np.abs(y - x)
    assert (err <= bound(x, dtype)).all(), float((err - bound(x, dtype)).max())
    assert (y[5] == 0).all()
    # Lossless compression: the same values as the uncompressed format.
    assert np.array_equal(y, HiddenFormat(dtype, "none").decode(HiddenFormat(dtype, "none").encode(x)).astype(np.float32))
    # The on-the-fly mode rounds exactly as the shards store.
    assert torch.equal(fmt.round_trip(torch.from_numpy(x)), torch.from_numpy(y))


def test_sizes_and_members():
    x = states(t=64, d=128)
    size = {(d, c): len(HiddenFormat(d, c).encode(x)) for d, c in FORMATS}
    assert size["fp16", "none"] == size["bf16", "none"] > 1.9 * size["int8", "none"]
    assert HiddenFormat("fp16", "none").member == "hidden.npy"  # the original layout keeps its name
    assert len({HiddenFormat(d, c).member for d, c in FORMATS}) == len(FORMATS)


def write_hidden_shards(root, fmt, index_fields=None):
    rel = "train/shard-000000.tar"
    with ShardWriter(root / rel, rel_path=rel, split="train") as w:
        for i in range(3):
            w.write(f"k{i}", {"json": {"duration_s": 1.0}, fmt.member: fmt.encode(states(t=10 + i, seed=i))})
    write_index(root, build_index("hidden", [w.summary], hidden_size=48, **(index_fields or fmt.index_fields())))
    return root


def read_hidden(root):
    ld = ShardLoader(root, "train", 0, 1, length_fn=lambda s: 1, batch_budget=64, max_batch_size=64,
                     fields=["hidden"], endless=False, shuffle=False)
    return {s["__key__"]: s["hidden"] for b in ld for s in b}, ld.stats


@pytest.mark.parametrize("dtype,comp", [("bf16", "zlib"), ("int8", "none"), ("int8", "zlib")])
def test_reader_decodes_the_indexed_format(tmp_path, dtype, comp):
    root = write_hidden_shards(tmp_path / "s", HiddenFormat(dtype, comp))
    index = json.loads((root / "index.json").read_text())
    assert index["hidden_dtype"] == {"bf16": "bfloat16", "int8": "int8"}[dtype]
    assert index["hidden_compression"] == comp
    got, stats = read_hidden(root)
    assert sorted(got) == ["k0", "k1", "k2"] and stats["samples"] == 3
    for i in range(3):
        x = states(t=10 + i, seed=i)
        assert (np.abs(got[f"k{i}"] - x) <= bound(x, dtype)).all()


def test_index_without_format_is_the_original_fp16(tmp_path):
    root = write_hidden_shards(tmp_path / "s", HiddenFormat("fp16", "none"), index_fields={})
    got, _ = read_hidden(root)
    assert got["k1"].dtype == np.float16 and np.array_equal(got["k1"], states(t=11, seed=1).astype(np.float16))


@pytest.mark.parametrize("key,value", [("hidden_dtype", "float8_e4m3"), ("hidden_compression", "zstd")])
def test_unknown_format_is_one_line_error(tmp_path, key, value):
    root = write_hidden_shards(tmp_path / "s", HiddenFormat("int8", "zlib"))
    index = json.loads((root / "index.json").read_text())
    index[key] = value
    (root / "index.json").write_text(json.dumps(index))
    with pytest.raises(UserError) as err:
        read_hidden(root)
    msg = str(err.value)
    assert "\n" not in msg and "index.json" in msg and key in msg and value in msg
    # A reader that asks only for other members does not care how states are stored.
    ShardLoader(root, "train", 0, 1, length_fn=lambda s: 1, batch_budget=64, max_batch_size=64, fields=[],
                endless=False)


def test_unknown_option_is_one_line_error():
    with pytest.raises(UserError, match="int4"):
        HiddenFormat("int4", "none")
