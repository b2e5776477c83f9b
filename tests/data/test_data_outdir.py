"""Output folders of the data commands: nothing but the project's own files is ever deleted or overwritten
(issue 11, item 1). Real folders, real CLI calls."""
import json

import numpy as np
import pytest
import soundfile as sf

from llmtts.cli import main
from llmtts.data.outdir import MARKER
from llmtts.data.parallel_map import iter_shard, map_shards
from llmtts.errors import UserError


def _tone(path, seconds=0.6, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.3 * np.sin(np.arange(int(seconds * sr)) * 0.08)).astype(np.float32), sr)


def _manifest_dataset(root):
    """The issue's reproduction: a dataset whose audio lives in ROOT/train/, described by ROOT/data.jsonl."""
    _tone(root / "train" / "a.wav")
    _tone(root / "train" / "b.wav", 0.7)
    rows = [{"audio": "train/a.wav", "text": "Hello there."}, {"audio": "train/b.wav", "text": "General Kenobi."}]
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "data.jsonl"


def _shards(inp, out, *extra):
    return main(["data", "shards", "--input-dir", str(inp), "--format", "manifest", "--out", str(out),
                 "--sample-rate", "16000", "--val-fraction", "0", "--no-progress", *extra])


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("llmtts: error: "), err
    for w in words:
        assert w in err, err
    return err


def test_out_equal_to_or_above_the_input_is_refused_and_the_dataset_kept(tmp_path, capsys):
    manifest = _manifest_dataset(tmp_path / "d")
    before = sorted(p.name for p in (tmp_path / "d" / "train").iterdir())
    assert _shards(manifest, tmp_path / "d") == 2  # --out = the folder holding the manifest and its audio
    _one_line_error(capsys, "--out", "above")
    assert _shards(manifest, tmp_path) == 2
    _one_line_error(capsys, "--out")
    assert sorted(p.name for p in (tmp_path / "d" / "train").iterdir()) == before == ["a.wav", "b.wav"]


def test_out_inside_the_input_folder_is_refused(tmp_path, capsys):
    _manifest_dataset(tmp_path / "d")
    assert _shards(tmp_path / "d", tmp_path / "d" / "shards") == 2  # a manifest directory is the input
    _one_line_error(capsys, "inside the input")
    assert not (tmp_path / "d" / "shards").exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    manifest = _manifest_dataset(tmp_path / "d")
    (tmp_path / "f").write_text("mine")
    assert _shards(manifest, tmp_path / "f") == 2
    _one_line_error(capsys, "--out", "not a directory")
    assert (tmp_path / "f").read_text() == "mine"


def test_non_empty_folder_that_is_not_a_shard_folder_is_refused(tmp_path, capsys):
    manifest = _manifest_dataset(tmp_path / "d")
    out = tmp_path / "other"
    _tone(out / "train" / "precious.wav")
    assert _shards(manifest, out) == 2
    _one_line_error(capsys, "not empty", "not written by llmtts")
    assert (out / "train" / "precious.wav").is_file() and sorted(p.name for p in out.iterdir()) == ["train"]


def test_rerun_with_other_settings_removes_only_listed_files(tmp_path):
    manifest = _manifest_dataset(tmp_path / "d")
    out = tmp_path / "s"
    assert _shards(manifest, out, "--samples-per-shard", "1") == 0
    assert sorted(p.name for p in (out / "train").glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    (out / "train" / "notes.txt").write_text("mine")  # files that are not ours, inside and beside the splits
    (out / "README").write_text("mine")
    assert _shards(manifest, out, "--samples-per-shard", "2") == 0
    assert sorted(p.name for p in (out / "train").iterdir()) == ["notes.txt", "shard-000000.tar"]
    assert (out / "README").read_text() == "mine"
    assert json.loads((out / "index.json").read_text())["totals"]["num_samples"] == 2


def test_interrupted_run_is_still_recognised(tmp_path):
    """Shards are written before index.json; the marker (written first) makes a re-run resume, not refuse."""
    manifest = _manifest_dataset(tmp_path / "d")
    out = tmp_path / "s"
    assert _shards(manifest, out) == 0
    assert json.loads((out / MARKER).read_text())["files"] == ["train/shard-000000.tar"]
    (out / "index.json").unlink()  # as if killed before the index was written
    assert _shards(manifest, out) == 0 and (out / "index.json").is_file()


def _copy_json(in_path, writer):
    for s in iter_shard(in_path, fields=[]):
        writer.write(s["__key__"], {"json": s["json"]})


def test_map_shards_refuses_foreign_folders_and_other_inputs(make_shards, tmp_path):
    """The folder check of `codec encode` / `llm dump-hidden` (their CLI: tests/codec/test_codec_encode.py)."""
    src, _ = make_shards(2, 2)
    other, _ = make_shards(1, 2, name="other")
    foreign = tmp_path / "foreign"
    (foreign / "train").mkdir(parents=True)
    (foreign / "train" / "shard-000000.tar").write_text("mine")  # someone's file with one of our names
    for out, words in [(foreign, "not empty"), (tmp_path, "above"), (src / "x", "inside the input")]:
        with pytest.raises(UserError, match=words):
            map_shards(src, out, _copy_json, kind="tokens", progress=False)
    assert (foreign / "train" / "shard-000000.tar").read_text() == "mine"
    out = tmp_path / "tok"
    map_shards(src, out, _copy_json, kind="tokens", progress=False)
    map_shards(src, out, _copy_json, kind="tokens", progress=False)  # a re-run from the same input resumes
    (out / MARKER).unlink()
    (out / "index.json").unlink()  # an interrupted run of a version without the marker: its .done.json files
    map_shards(src, out, _copy_json, kind="tokens", progress=False)
    with pytest.raises(UserError, match="made from"):
        map_shards(other, out, _copy_json, kind="tokens", progress=False)


def test_corpus_refuses_a_foreign_folder_and_keeps_its_wavs(tmp_path, capsys):
    out = tmp_path / "c"
    _tone(out / "wavs" / "utt_000009.wav")  # same naming scheme, but someone else's corpus (no corpus.json)
    assert main(["data", "corpus", "--out", str(out), "--num-utterances", "1", "--voice", "espeak",
                 "--no-progress"]) == 2
    _one_line_error(capsys, "not empty", "not written by llmtts")
    assert (out / "wavs" / "utt_000009.wav").is_file()
    (tmp_path / "file").write_text("x")
    assert main(["data", "corpus", "--out", str(tmp_path / "file"), "--num-utterances", "1", "--no-progress"]) == 2
    _one_line_error(capsys, "not a directory")
