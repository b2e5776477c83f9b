"""``llmtts export soprano``: round trip import -> export -> import, and one-line errors for shapes Soprano's
runtime cannot load. (Loading the export in soprano-tts itself is the manual check in docs/soprano.md.)"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import soprano_fixture
from llmtts.cli import main
from llmtts.decoder.export import load_decoder
from llmtts.errors import UserError
from llmtts.interop.soprano.exporter import export_soprano
from llmtts.interop.soprano.importer import import_soprano


@pytest.fixture(scope="module")
def imported(tmp_path_factory, soprano_decoder_dir):
    root = tmp_path_factory.mktemp("soprano_export")
    soprano_fixture.build(root / "model", "small", seed=7)
    import_soprano(root / "model", root / "imp")
    (root / "dec768").symlink_to(soprano_decoder_dir)  # a random decoder of Soprano's own shape
    return root


def test_round_trip_import_export_import_is_identical(imported):
    root = imported
    dec = load_decoder(root / "dec768")[0]
    out = export_soprano(root / "imp" / "llm", root / "dec768", root / "exp")
    # The exported LLM is the original Soprano checkpoint, bit for bit (the permutation undone).
    src, exp = load_file(str(root / "model" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert src.keys() == exp.keys() and all(torch.equal(src[k], exp[k]) for k in src)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vocab_size"] == len(soprano_fixture.vocab_tokens(1000)) + soprano_fixture.UNNAMED_ROWS
    assert cfg["eos_token_id"] == soprano_fixture.SPECIALS.index("[STOP]")
    assert (out / "tokenizer.json").read_bytes() == (root / "model" / "tokenizer.json").read_bytes()
    pth = torch.load(str(out / "decoder.pth"), weights_only=True)
    assert "decoder.convnext.7.gamma" in pth and tuple(pth["head.out.weight"].shape) == (2050, 768)
    # ... and importing it again gives the same exports.
    import_soprano(out, root / "imp2")
    a, b = load_file(str(root / "imp" / "llm" / "model.safetensors")), load_file(str(root / "imp2" / "llm" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("vocab.json", "frontend.json", "inference.json"):
        assert (root / "imp" / "llm" / name).read_text() == (root / "imp2" / "llm" / name).read_text()
    d2 = load_file(str(root / "imp2" / "decoder" / "model.safetensors"))
    d1 = {k: v.float() for k, v in dec.state_dict().items()}
    assert d1.keys() == d2.keys() and all(torch.equal(d1[k], d2[k]) for k in d1)


def test_export_names_the_decoder_shape_that_differs(imported, capsys):
    root = imported
    rc = main(["export", "soprano", "--llm-path", str(root / "imp" / "llm"), "--decoder-path",
               str(root / "imp" / "decoder"), "--out", str(root / "bad")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "decoder dim is 64" in err and "dim=768" in err and "\n" not in err
    assert not (root / "bad").exists()


def test_export_refuses_a_model_without_sopranos_tokenizer(imported, tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "infer"))
    from infer_helpers import write_tiny_exports  # this project's own tiny char-tokenizer exports

    llm, _ = write_tiny_exports(tmp_path)
    with pytest.raises(UserError, match="its tokenizer is 'chars', not Soprano's"):
        export_soprano(llm, imported / "dec768", tmp_path / "x")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_export_never_deletes_a_foreign_folder_or_its_own_input(imported, tmp_path, capsys):
    """``--out`` a folder of the user's, or the folder holding the input model (``--out .`` beside it): one line,
    exit 2, every byte still there; a sibling named like the old fixed temporary folder is untouched."""
    root = imported
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (tmp_path / "mine.tmp").mkdir()
    (tmp_path / "mine.tmp" / "also").write_text("mine")
    before = _snapshot(tmp_path), _snapshot(root / "imp")
    for out in (mine, root / "imp", root):
        rc = main(["export", "soprano", "--llm-path", str(root / "imp" / "llm"), "--decoder-path",
                   str(root / "dec768"), "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "\n" not in err and "--out" in err, err
    assert (_snapshot(tmp_path), _snapshot(root / "imp")) == before


def test_import_never_replaces_a_training_run(imported, tmp_path, capsys):
    """``import soprano --out`` pointed at a pipeline run folder (its llm/ holds checkpoints and metrics) is
    refused before any work; the run is intact. An earlier import in the same OUT is replaced."""
    run = tmp_path / "run"
    (run / "llm" / "checkpoints" / "step_00000100").mkdir(parents=True)
    (run / "llm" / "metrics.jsonl").write_text('{"step": 100}\n')
    (run / "llm" / "checkpoints" / "step_00000100" / "COMPLETE").write_text("ok")
    before = _snapshot(run)
    rc = main(["import", "soprano", "--model-dir", str(imported / "model"), "--out", str(run)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "not written by llmtts" in err, err
    assert _snapshot(run) == before
    again = tmp_path / "imp"
    import_soprano(imported / "model", again)
    import_soprano(imported / "model", again)  # its own earlier output: replaced
    assert (again / "llm" / "vocab.json").is_file() and not any(p.name.startswith(".") and "tmp" in p.name
                                                                 for p in again.iterdir())
