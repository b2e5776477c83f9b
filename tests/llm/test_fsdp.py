"""Two real processes (torchrun, gloo) train the tiny LLM with FSDP2: every step's loss and the exported weights
equal a 2-process DDP run over the same batches (the rank split of the data is the same for both), the export
loads, and the 2-rank DCP checkpoint resumes on one process with the same weights."""
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import proc_group
from llmtts.cli import main
from token_shards import make_token_shards

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["llm", "train", "--from-scratch", "--config", "configs/llm/tiny.yaml", "parallel.backend=gloo",
         "trainer.max_steps=6", "trainer.log_every=1", "log.progress=false", "log.tensorboard=false",
         "vocab.n_audio=64", "packing.row_length=128", "data.batch_budget=256", "model.num_hidden_layers=2",
         "model.max_position_embeddings=256", "packing.enabled=true", "packing.attention=segments"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    shards = make_token_shards(tmp / "tok", n_train=8, n_val=4, per_shard=2)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    out = {}
    for strategy in ("fsdp2", "ddp"):
        run = tmp / strategy
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "llmtts.cli",
               *TRAIN, "--input-dir", str(shards), "--save-dir", str(run), f"parallel.strategy={strategy}"]
        p = proc_group.run(cmd, timeout=180, cwd=ROOT, env=env)
        assert p.returncode == 0, p.stdout[-4000:]
        out[strategy] = run
    return shards, out


def train_rows(run):
    return [m for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if m["split"] == "train"]


def test_two_process_fsdp2_equals_ddp(runs):
    _, r = runs
    env_info = json.loads((r["fsdp2"] / "env.json").read_text())
    assert env_info["world_size"] == 2 and env_info["strategy"] == "fsdp2"
    fsdp, ddp = train_rows(r["fsdp2"]), train_rows(r["ddp"])
    assert [m["step"] for m in fsdp] == [m["step"] for m in ddp] == list(range(1, 7))
    # fp32 on CPU; only the order of the gradient averaging differs (reduce-scatter vs all-reduce).
    torch.testing.assert_close(torch.tensor([m["loss"] for m in fsdp]), torch.tensor([m["loss"] for m in ddp]),
                               rtol=1e-5, atol=1e-6)
    assert fsdp[-1]["loss"] < fsdp[0]["loss"]  # it learned something, identically
    wf = load_file(str(r["fsdp2"] / "export" / "model.safetensors"))
    wd = load_file(str(r["ddp"] / "export" / "model.safetensors"))
    assert wf.keys() == wd.keys()
    for k in wd:
        torch.testing.assert_close(wf[k], wd[k], rtol=1e-4, atol=1e-6)

    from llmtts.llm import load_llm

    model, vocab, _ = load_llm(r["fsdp2"])
    assert model.config.num_hidden_layers == 2 and vocab.n_audio == 64


def test_two_rank_fsdp2_checkpoint_resumes_on_one_process(runs, tmp_path):
    shards, r = runs
    (ckpt,) = list((r["fsdp2"] / "checkpoints").iterdir())
    assert (ckpt / "COMPLETE").is_file() and (ckpt / "dcp").is_dir()
    # One process, strategy none, from the 2-rank checkpoint at its last step: the reshard alone, re-exported.
    one = tmp_path / "one"
    assert main([*TRAIN, "--input-dir", str(shards), "--save-dir", str(one), "--resume", str(ckpt)]) == 0
    w1 = load_file(str(one / "export" / "model.safetensors"))
    wf = load_file(str(r["fsdp2"] / "export" / "model.safetensors"))
    assert w1.keys() == wf.keys() and all(torch.equal(w1[k], wf[k]) for k in wf)
