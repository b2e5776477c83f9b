"""``llmtts codec encode`` on real WebDataset shards: layout, determinism, 2 ranks == 1 rank, resume,
corrupt samples skipped and counted."""
import io
import json
import math
import os
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

import proc_group
from codec_shards_helper import write_audio_shards
from llmtts.audio import resample
from llmtts.cli import main as cli_main
from llmtts.codec.encode import encode_shards
from llmtts.codec.export import load_codec
from llmtts.data.parallel_map import iter_shard

def _tars(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.glob("*/*.tar"))}


def _samples(d: Path) -> dict[str, dict]:
    return {s["__key__"]: s for p in sorted(d.glob("*/*.tar")) for s in iter_shard(p)}


def test_load_codec_accepts_run_dir_and_export_dir(codec_dir):
    a, b = load_codec(codec_dir), load_codec(codec_dir.parent)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    meta = json.loads((codec_dir / "config.json").read_text())
    assert meta["samples_per_token"] == 1024 and meta["codebook"]["codebook_size"] == 1000
    assert meta["codebook"]["layout"] == "[T]"


def test_encode_layout_and_determinism(codec_dir, audio_shards, tmp_path):
    index = encode_shards(codec_dir, audio_shards, tmp_path / "a", batch_size=3, device="cpu", progress=False)
    encode_shards(codec_dir, audio_shards, tmp_path / "b", batch_size=3, device="cpu", progress=False)
    assert index["kind"] == "tokens" and index["totals"]["num_samples"] == 14 and index["num_rejected"] == 0
    assert _tars(tmp_path / "a") == _tars(tmp_path / "b")  # byte-identical shards
    model = load_codec(codec_dir)
    inputs = _samples(audio_shards)
    out = _samples(tmp_path / "a")
    assert set(out) == set(inputs)
    distinct = set()
    for key, s in out.items():
        meta, codes = s["json"], s["codes"]
        ref = resample(inputs[key]["audio"], inputs[key]["sample_rate"], 16000)
        assert meta["num_samples"] == len(ref) and s["sample_rate"] == meta["sample_rate"] == 16000
        assert meta["n_tokens"] == math.ceil(len(ref) / 1024) == codes.shape[0] and codes.ndim == 1
        assert codes.dtype == np.int16 and len(s["audio"]) == meta["n_tokens"] * 1024 == meta["n_tokens"] * meta["samples_per_token"]
        assert np.abs(s["audio"][: len(ref)] - np.clip(ref, -1, 1)).max() < 1e-3  # 16-bit FLAC
        assert not s["audio"][len(ref):].any()
        assert meta["text"] == inputs[key]["json"]["text"]
        # batched encoding gives the same codes as encoding the clip alone
        with torch.no_grad():
            assert np.array_equal(model.encode(torch.from_numpy(ref)[None])[0].numpy(), codes)
        distinct.update(codes.tolist())
    assert len(distinct) > 5
    # re-encoding token shards (e.g. with a newer codec) un-pads them first: same lengths, and the same codes
    # up to the 16-bit FLAC rounding of the stored audio
    encode_shards(codec_dir, tmp_path / "a", tmp_path / "c", batch_size=3, device="cpu", progress=False)
    again = _samples(tmp_path / "c")
    same = np.mean(np.concatenate([again[k]["codes"] == out[k]["codes"] for k in out]))
    assert same > 0.9
    assert all(again[k]["json"]["num_samples"] == out[k]["json"]["num_samples"] for k in out)


def test_two_ranks_equal_one_rank_and_resume(codec_dir, audio_shards, tmp_path):
    encode_shards(codec_dir, audio_shards, tmp_path / "one", batch_size=4, device="cpu", progress=False)
    with ExitStack() as stack:  # both ranks are killed if either fails or hangs
        procs = []
        for rank in range(2):
            env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", OMP_NUM_THREADS="1")
            procs.append(stack.enter_context(proc_group.group(
                [sys.executable, "-m", "llmtts.cli", "codec", "encode", "--codec-path", str(codec_dir), "--input-dir",
                 str(audio_shards), "--out", str(tmp_path / "two"), "--batch-size", "4", "--device", "cpu",
                 "--no-progress"], env=env)))
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0, out
    assert _tars(tmp_path / "one") == _tars(tmp_path / "two")
    assert json.loads((tmp_path / "two" / "index.json").read_text())["totals"]["num_samples"] == 14
    # resume: finished shards are skipped, a missing one is redone identically
    done = tmp_path / "two" / "train" / "shard-000000.tar"
    redo = tmp_path / "two" / "train" / "shard-000001.tar"
    mtime = done.stat().st_mtime_ns
    redo.unlink()
    encode_shards(codec_dir, audio_shards, tmp_path / "two", batch_size=4, device="cpu", progress=False)
    assert done.stat().st_mtime_ns == mtime
    assert _tars(tmp_path / "one") == _tars(tmp_path / "two")


def test_corrupt_sample_is_skipped_and_counted(codec_dir, tmp_path):
    shards = write_audio_shards(tmp_path / "audio", {"train": [3, 2]}, corrupt={"utt0001"})
    index = encode_shards(codec_dir, shards, tmp_path / "tok", batch_size=2, device="cpu", progress=False)
    assert index["rejected"] == {"bad_flac": 1} and index["num_rejected"] == 1
    assert index["totals"]["num_samples"] == 4
    assert "utt0001" not in _samples(tmp_path / "tok")


def test_encode_cli_bad_codec_path_is_one_line_error(tmp_path, audio_shards, capsys):
    rc = cli_main(["codec", "encode", "--codec-path", str(tmp_path / "nope"), "--input-dir", str(audio_shards),
                   "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope" in err and len(err.strip().splitlines()) == 1


def test_encode_cli_refuses_outputs_that_are_not_its_own(tmp_path, codec_dir, audio_shards, capsys):
    """--out a file, a non-empty folder that is not ours, the input's parent; an input index whose shard path
    leaves the folder: one-line errors, exit 2, nothing written (issue 11, items 1, 9, 10)."""
    (tmp_path / "file").write_text("mine")
    (tmp_path / "foreign" / "train").mkdir(parents=True)
    (tmp_path / "foreign" / "train" / "shard-000000.tar").write_text("mine")
    evil = write_audio_shards(tmp_path / "evil", {"train": [1]})
    index = json.loads((evil / "index.json").read_text())
    index["shards"][0]["path"] = "../victim/shard.tar"
    (evil / "index.json").write_text(json.dumps(index))
    cases = [(audio_shards, tmp_path / "file", "not a directory"), (audio_shards, tmp_path / "foreign", "not empty"),
             (audio_shards, audio_shards.parent, "above"), (evil, tmp_path / "o", "'../victim/shard.tar'")]
    for inp, out, words in cases:
        rc = cli_main(["codec", "encode", "--codec-path", str(codec_dir), "--input-dir", str(inp), "--out", str(out),
                       "--device", "cpu", "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and words in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "file").read_text() == "mine"
    assert (tmp_path / "foreign" / "train" / "shard-000000.tar").read_text() == "mine"
    assert not (tmp_path / "o").exists() and not (tmp_path / "victim").exists()


def test_sample_with_an_unusable_key_is_skipped_not_fatal(codec_dir, tmp_path):
    """Shards written by other tools may hold keys this project cannot write (spaces, dots): skip and count."""
    import tarfile

    shards = write_audio_shards(tmp_path / "audio", {"train": [3, 2]})
    tar_path = sorted((shards / "train").glob("*.tar"))[0]
    with tarfile.open(tar_path) as tar:
        first = tar.getmembers()[0].name.split(".")[0]
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.name.startswith(first + ".")]
    assert members
    with tarfile.open(tar_path, "a") as tar:
        for m, data in members:
            m.name = "odd key" + m.name[len(first):]
            tar.addfile(m, io.BytesIO(data))
    index = encode_shards(codec_dir, shards, tmp_path / "tok", batch_size=2, device="cpu", progress=False)
    assert index["rejected"] == {"bad_key": 1}
    assert index["totals"]["num_samples"] == 5
