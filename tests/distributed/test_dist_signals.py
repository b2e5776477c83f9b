"""SIGTERM to torchrun (as SLURM / a launcher sends it) on a 2-rank DDP GAN run (two optimizers)."""
import json
import os
import signal

import pytest
import torch

from llmtts.config import load_config
from llmtts.distributed.signals import REQUEUE_EXIT_CODE
from llmtts.train.toy import ToyConfig, ToyStage
from llmtts.train.trainer import STOPPED_MARKER, Trainer
from train_runs import BASE, kill_tree, popen_toy, train_losses, wait_for_step

GAN = ["toy.gan=true", "trainer.optim.schedule=constant", "trainer.max_steps=1000"]


@pytest.mark.slow
def test_sigterm_to_torchrun_checkpoints_on_all_ranks_and_marks_requeue(tmp_path):
    run = tmp_path / "run"
    # Uneven validation data (rank 1 has 3 more batches) with eval every 2 steps must not hang.
    proc = popen_toy(run, GAN + ["parallel.strategy=ddp", "data.max_batch_size=4", "toy.step_sleep=0.1",
                                 "trainer.eval_every=2", "toy.val_extra_per_rank=3"], nproc=2)
    try:
        wait_for_step(run, 3, proc)
        os.kill(proc.pid, signal.SIGTERM)  # torchrun forwards it to both workers
        rc = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            kill_tree(proc)  # torchrun and both workers, whatever failed above
    assert rc != 0  # torchrun reports 1 for any worker exit code but 0: hence the marker file
    marker = json.loads((run / STOPPED_MARKER).read_text())
    assert marker["exit_code"] == REQUEUE_EXIT_CODE and marker["signal"] == signal.SIGTERM
    step = marker["step"]
    ck = run / "checkpoints" / f"step_{step:08d}"
    assert (ck / "COMPLETE").is_file() and (ck / "rank_00000.pt").is_file() and (ck / "rank_00001.pt").is_file()
    assert max(train_losses(run)) == step
    val_steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                 if r["split"] == "val"]
    assert val_steps[:1] == [2] and all(s % 2 == 0 for s in val_steps)

    # The DDP GAN (disc frozen through ctx.frozen in the generator step) follows the 1-process run.
    ref = tmp_path / "ref"
    cfg = load_config(ToyConfig, None, BASE + GAN[:2] + [f"trainer.max_steps={step}", "data.max_batch_size=8"])
    Trainer(ToyStage(cfg, ref), cfg, ref, resume="none").fit()
    for key in ("loss", "loss_d"):
        a, b = train_losses(run, key), train_losses(ref, key)
        torch.testing.assert_close(torch.tensor([a[s] for s in sorted(a)]), torch.tensor([b[s] for s in sorted(a)]),
                                   rtol=1e-5, atol=1e-6)
