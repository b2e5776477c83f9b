"""dump-hidden writes exactly the vectors generation sees, one per audio token, resumably."""
import io
import json
import os
import tarfile

import numpy as np
import pytest

from llmtts.cli import main
from llmtts.llm import load_llm
from llmtts.llm.export import save_export
from llmtts.llm.hidden import prompt_ids
from llm_helpers import generation_states
from token_shards import make_token_shards


def read_tar(path):
    out = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            out.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return out


@pytest.fixture
def exported(tmp_path, tiny_model, vocab, frontend):
    save_export(tiny_model, vocab, frontend, tmp_path / "llm" / "export")
    return tmp_path / "llm"


def test_dump_matches_generation_and_resumes(tmp_path, exported, vocab, frontend):
    shards = make_token_shards(tmp_path / "tok", n_train=6, n_val=2, n_audio=vocab.n_audio, per_shard=3,
                               extra_bad=True)
    out = tmp_path / "hidden"
    # Small packed forwards: several utterances per row, several forwards per shard. fp16: exact to compare.
    fp16 = ["--hidden-dtype", "fp16", "--compression", "none"]
    assert main(["llm", "dump-hidden", "--llm-path", str(exported), "--input-dir", str(shards), "--out", str(out),
                 "--batch-tokens", "64", *fp16]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["kind"] == "hidden" and index["hidden_size"] == 64 and index["samples_per_token"] == 1024
    assert index["totals"]["num_samples"] == 8
    assert index["rejected"] == {"code_out_of_range": 1, "missing_text": 1}
    # Resume: finished shards are skipped (their files are not rewritten).
    shard = out / "train" / "shard-000000.tar"
    before = shard.stat().st_mtime_ns
    (out / "train" / "shard-000001.tar").unlink()
    (out / "train" / "shard-000001.tar.done.json").unlink()
    assert main(["llm", "dump-hidden", "--llm-path", str(exported), "--input-dir", str(shards),
                 "--out", str(out), *fp16]) == 0
    assert shard.stat().st_mtime_ns == before and (out / "train" / "shard-000001.tar").is_file()
    model, v, fe = load_llm(exported)
    # shard 0 was written with 64-token packed forwards, shard 1 (re-run) with 8192-token ones.
    for name in ("shard-000000.tar", "shard-000001.tar"):
        compare_with_generation(model, v, fe, read_tar(shards / "train" / name), read_tar(out / "train" / name))


def compare_with_generation(model, v, fe, src, dst):
    assert set(dst) == set(src)
    for key, members in dst.items():
        for ext in ("flac", "json", "codes.npy"):
            assert members[ext] == src[key][ext]  # token members copied byte for byte
        hidden = np.load(io.BytesIO(members["hidden.npy"]))
        codes = np.load(io.BytesIO(members["codes.npy"]))
        text = json.loads(members["json"])["normalized_text"]
        assert hidden.dtype == np.float16 and hidden.shape == (len(codes), 64)
        prompt = prompt_ids(v, fe, text, normalized=True)
        gen, _ = generation_states(model, prompt, (codes.astype(np.int64) + v.audio_offset).tolist())
        assert_fp16_of(hidden, gen.numpy())


def assert_fp16_of(stored: np.ndarray, exact: np.ndarray) -> None:
    """``stored`` (float16) is ``exact`` (the generation loop's fp32 states) rounded to float16: within half an
    fp16 step of each value, plus the fp32 noise between a packed forward and the cached one-token loop (~1e-7 of
    a state's scale; 1e-5 allowed), which can move a value across a rounding midpoint."""
    step = np.spacing(np.abs(exact).astype(np.float16)).astype(np.float32)
    noise = 1e-5 * np.abs(exact).max(axis=-1, keepdims=True)
    err = np.abs(stored.astype(np.float32) - exact)
    worst = float((err / (step / 2 + noise)).max())
    assert worst <= 1.0, f"dumped states differ from generation by {worst:.2f} x (half an fp16 step + noise)"


def test_dump_rejects_non_token_shards(tmp_path, exported, capsys):
    from llmtts.data.shards import build_index, write_index

    (tmp_path / "audio" / "train").mkdir(parents=True)
    write_index(tmp_path / "audio", build_index("audio", []))
    assert main(["llm", "dump-hidden", "--llm-path", str(exported), "--input-dir", str(tmp_path / "audio"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "token shards" in capsys.readouterr().err


def test_dump_refuses_outputs_that_are_not_its_own(tmp_path, exported, vocab, capsys):
    """--out a file, the input, a folder above it, a non-empty folder that is not ours: one line, exit 2, nothing
    touched (issue 11, items 1 and 10)."""
    shards = make_token_shards(tmp_path / "tok", n_train=2, n_val=0, n_audio=vocab.n_audio, per_shard=2)
    (tmp_path / "file").write_text("mine")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    for out, words in [(tmp_path / "file", "not a directory"), (shards, "is the input"), (tmp_path, "above"),
                       (tmp_path / "foreign", "not empty")]:
        assert main(["llm", "dump-hidden", "--llm-path", str(exported), "--input-dir", str(shards),
                     "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "file").read_text() == "mine" and os.listdir(tmp_path / "foreign") == ["notes.txt"]


@pytest.mark.slow
def test_two_rank_dump_equals_one_rank(tmp_path, exported, vocab):
    """torchrun with 2 ranks splits the shards and writes the same bytes as one process."""
    import os
    import sys

    import proc_group

    shards = make_token_shards(tmp_path / "tok", n_train=6, n_val=2, n_audio=vocab.n_audio, per_shard=2)
    args = ["-m", "llmtts.cli", "llm", "dump-hidden", "--llm-path", str(exported), "--input-dir", str(shards)]
    assert main(args[2:] + ["--out", str(tmp_path / "one")]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args,
           "--out", str(tmp_path / "two")]
    proc = proc_group.run(cmd, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))  # reaps workers on a hang
    assert proc.returncode == 0, proc.stdout[-3000:]
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.tar"))
    two = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.tar"))
    assert one == two and len(one) == 4
    for rel in one:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
    a, b = (json.loads((tmp_path / d / "index.json").read_text()) for d in ("one", "two"))
    assert a["totals"] == b["totals"] and a["totals"]["num_samples"] == 8


def test_dump_in_another_format_reads_back_as_fp16_within_its_bound(tmp_path, exported, vocab):
    from llmtts.data.reader import ShardLoader

    shards = make_token_shards(tmp_path / "tok", n_train=4, n_val=0, n_audio=vocab.n_audio, per_shard=4)
    got = {}
    for dtype, comp in (("fp16", "none"), ("int8", "zlib")):
        out = tmp_path / f"hidden-{dtype}"
        assert main(["llm", "dump-hidden", "--llm-path", str(exported), "--input-dir", str(shards), "--out", str(out),
                     "--hidden-dtype", dtype, "--compression", comp]) == 0
        index = json.loads((out / "index.json").read_text())
        assert (index["hidden_dtype"], index["hidden_compression"]) == ({"fp16": "float16"}.get(dtype, dtype), comp)
        names = read_tar(out / "train" / "shard-000000.tar")
        assert all(("hidden.npy" in m) == (dtype == "fp16") for m in names.values())
        ld = ShardLoader(out, "train", 0, 1, length_fn=lambda s: 1, batch_budget=64, max_batch_size=64,
                         fields=["hidden"], endless=False, shuffle=False)
        got[dtype] = {s["__key__"]: np.asarray(s["hidden"], np.float32) for b in ld for s in b}
    assert sorted(got["int8"]) == sorted(got["fp16"]) and len(got["fp16"]) == 4
    for key, ref in got["fp16"].items():
        step = np.abs(ref).max(axis=1, keepdims=True) / 127  # int8 keeps every value within half a step (+ fp16)
        assert (np.abs(got["int8"][key] - ref) <= 0.51 * step + np.abs(ref) * 2.0 ** -10).all()
