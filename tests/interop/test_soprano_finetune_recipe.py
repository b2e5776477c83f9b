"""The fine-tune recipe on an imported Soprano stand-in: frozen bottom layers and input embeddings stay bit for bit,
the rest trains, the imported row count is kept without ``model.vocab_size``, and a run stopped by SIGTERM
(checkpoint, exit 75) continues with ``--resume auto`` to the end."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

import soprano_fixture
from llmtts.cli import main
from llmtts.interop.soprano.importer import import_soprano
from llmtts.llm.export import load_llm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))
from token_shards import make_token_shards  # noqa: E402

FAST = ["log.progress=false", "log.tensorboard=false", "trainer.log_every=1", "packing.enabled=true",
        "packing.row_length=128", "data.batch_budget=256", "trainer.optim.warmup_steps=2",
        "trainer.optim.lr=1e-3", "trainer.eval_every=0", "trainer.save_every=1000"]


def logged_steps(run: Path) -> list[int]:
    f = run / "metrics.jsonl"
    if not f.is_file():
        return []
    return [json.loads(x)["step"] for x in f.read_text().splitlines() if '"train"' in x]


def test_frozen_finetune_from_imported_soprano_stops_and_resumes(tmp_path):
    soprano_fixture.build(tmp_path / "model", "small", seed=9)
    import_soprano(tmp_path / "model", tmp_path / "imp")
    llm = tmp_path / "imp" / "llm"
    m0, v0, _ = load_llm(llm)
    shards = make_token_shards(tmp_path / "tok", n_train=6, n_val=0, n_audio=1000)
    run = tmp_path / "ft"
    # no model.vocab_size: the imported row count is kept because the vocabulary fits in it
    args = ["llm", "train", "--config", "configs/llm/tiny.yaml", "--input-dir", str(shards), "--save-dir", str(run),
            "--init-from", str(llm), f"vocab.tokenizer=frontend:{llm}", "freeze_layers=1", "freeze_embeddings=true",
            "trainer.max_steps=12", *FAST]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "llmtts.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while 2 not in logged_steps(run):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the fine-tune did not reach step 2"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert rc == 75, proc.stderr.read()[-3000:]
    stopped = json.loads((run / "stopped.json").read_text())["step"]
    assert 2 <= stopped < 12 and not (run / "export").exists()
    assert main([*args, "--resume", "auto"]) == 0
    assert logged_steps(run) == list(range(1, 13))
    m1, v1, f1 = load_llm(run)
    assert v1 == v0 and f1.tokenizer.kind == "soprano"  # rows, specials and text kept; export soprano still fits
    w0, w1 = m0.state_dict(), m1.state_dict()
    frozen = [k for k in w0 if k.startswith("model.layers.0.") or k == "model.embed_tokens.weight"]
    trained = [k for k in w0 if k.startswith("model.layers.1.") and k.endswith("proj.weight")] + ["lm_head.weight"]
    assert len(frozen) > 5 and [k for k in frozen if not torch.equal(w0[k], w1[k])] == []
    assert all(not torch.equal(w0[k], w1[k]) for k in trained)


def test_new_speaker_token_grows_the_imported_embedding(tmp_path, soprano_decoder_dir):
    """``vocab.speakers=[me]`` adds a row: every imported row keeps its meaning (lr 0: bit for bit), the new row
    starts fresh, and such a model no longer fits Soprano's tokenizer (`export soprano` says so)."""
    import pytest

    from llmtts.errors import UserError
    from llmtts.interop.soprano.exporter import export_soprano

    soprano_fixture.build(tmp_path / "model", "small", seed=4)
    import_soprano(tmp_path / "model", tmp_path / "imp")
    llm = tmp_path / "imp" / "llm"
    m0, v0, _ = load_llm(llm)
    shards = make_token_shards(tmp_path / "tok", n_train=4, n_val=0, n_audio=1000, speakers=("me",))
    run = tmp_path / "ft"
    assert main(["llm", "train", "--config", "configs/llm/tiny.yaml", "--input-dir", str(shards), "--save-dir",
                 str(run), "--init-from", str(llm), f"vocab.tokenizer=frontend:{llm}", "vocab.speakers=[me]",
                 *FAST, "trainer.max_steps=1", "trainer.optim.lr=0"]) == 0
    m1, v1, _ = load_llm(run)
    assert v1.speakers == ("me",) and v1.used == v0.used + 1 and v1.size >= v1.used
    for w0, w1 in ((m0.get_input_embeddings().weight, m1.get_input_embeddings().weight),
                   (m0.lm_head.weight, m1.lm_head.weight)):
        assert torch.equal(w1[:v1.speaker_offset], w0[:v0.speaker_offset])      # specials + audio
        assert torch.equal(w1[v1.text_offset:v1.used], w0[v0.text_offset:v0.used])  # Soprano's text rows, moved up
        new = w1[v1.speaker_id("me")]
        assert not any(torch.equal(new, w0[i]) for i in range(v0.size)) and 0 < float(new.detach().std()) < 0.1
    with pytest.raises(UserError, match="rows added after the import"):
        export_soprano(run, soprano_decoder_dir, tmp_path / "back")
