"""The decoder's GAN stage under DDP with two processes, started the way the pipeline starts it
(``llmtts launch --mode local --nproc-per-node 2 decoder train ...``: torchrun, gloo)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

import proc_group
from decoder_helpers import TINY_OVERRIDES
from llmtts.cli import main
from llmtts.decoder.export import load_decoder

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_gan_stage_trains_under_ddp_through_the_local_launcher(data, tmp_path):
    recon = tmp_path / "recon"
    assert main(["decoder", "train", "--input-dir", str(data["hidden"]), "--save-dir", str(recon), "--stage", "recon",
                 "trainer.max_steps=1", *TINY_OVERRIDES]) == 0
    run = tmp_path / "gan"
    cmd = [sys.executable, "-m", "llmtts.cli", "launch", "--mode", "local", "--nproc-per-node", "2",
           "decoder", "train", "--input-dir", str(data["hidden"]), "--save-dir", str(run), "--stage", "gan",
           "--init-from", str(recon), "trainer.max_steps=2", "trainer.eval_every=0", *TINY_OVERRIDES,
           "parallel.strategy=ddp", "parallel.backend=gloo"]
    p = proc_group.run(cmd, timeout=240, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"))
    assert p.returncode == 0, p.stdout[-4000:]
    assert "torch.distributed.run --nproc-per-node=2" in p.stdout  # went through torchrun
    env = json.loads((run / "env.json").read_text())
    assert env["world_size"] == 2 and env["strategy"] == "ddp"
    rows = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]
    assert [r["step"] for r in rows] == [1, 2]  # rank 0 logs, once per step
    assert all({"loss_disc", "adv", "feature_matching"} <= set(r) and torch.isfinite(torch.tensor(r["loss"]))
               for r in rows)
    (ckpt,) = (run / "checkpoints").iterdir()
    assert sorted(f.name for f in ckpt.glob("rank_*.pt")) == ["rank_00000.pt", "rank_00001.pt"]
    # Both optimizers stepped: generator and discriminator left their starting points.
    gen, _ = load_decoder(run)
    start, _ = load_decoder(recon)
    assert any(not torch.equal(v, start.state_dict()[k]) for k, v in gen.state_dict().items())
    disc_moved = [r.get("grad_norm/disc", 0.0) for r in rows]
    assert all(g > 0 for g in disc_moved), rows
