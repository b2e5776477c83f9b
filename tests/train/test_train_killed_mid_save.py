"""A real training process SIGKILLed in the middle of a real checkpoint save: the half-written directory never
looks complete, `--resume auto` continues from the last complete checkpoint, removes the leftover and replays
the lost steps bit for bit (the rows the killed run logged after that checkpoint are dropped)."""
import json
import os
import signal
import subprocess

import torch

from train_runs import fit_inprocess, env, export_weights, kill_tree, toy_cmd, train_losses, wait_for

COMPLETE = "COMPLETE"  # the manifest a checkpoint gets last
COMMON = ["trainer.max_steps=12", "trainer.save_every=4", "trainer.keep_last=5", "trainer.ema_decay=0.5"]



def step_dirs(run_dir):
    return sorted(int(p.name[5:]) for p in (run_dir / "checkpoints").glob("step_*"))


def logged_train_steps(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if r["split"] == "train"]


def test_killed_mid_save_resumes_from_the_last_complete_checkpoint(tmp_path, caplog):
    fit_inprocess(tmp_path / "ref", *COMMON)
    run = tmp_path / "killed"
    # The second save (step 8) stops after DCP wrote models and optimizers, before the rank file and COMPLETE.
    proc = subprocess.Popen(toy_cmd(run, COMMON + ["toy.hang_in_save=2"]), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    partial = run / "checkpoints" / ".tmp_step_00000008"
    try:
        wait_for(partial / "dcp" / ".metadata", proc)
    finally:
        kill_tree(proc)
    assert proc.returncode == -signal.SIGKILL
    assert (partial / "dcp").is_dir() and not (partial / COMPLETE).exists()
    assert not (partial / "rank_00000.pt").exists() and not (partial / "trainer.json").exists()
    assert step_dirs(run) == [4]  # nothing named step_8 exists
    assert (run / "checkpoints" / "step_00000004" / COMPLETE).is_file() and not (run / "export").exists()
    assert max(logged_train_steps(run)) == 8  # the killed run had logged past its last checkpoint

    with caplog.at_level("WARNING"):
        res = fit_inprocess(run, *COMMON)
    assert res.step == 12
    assert "removing partial checkpoint" in caplog.text and ".tmp_step_00000008" in caplog.text
    assert not partial.exists() and not [p for p in os.listdir(run / "checkpoints") if p.startswith(".tmp")]
    assert step_dirs(run) == [4, 8, 12] and all((run / "checkpoints" / f"step_{s:08d}" / COMPLETE).is_file() for s in (8, 12))
    assert logged_train_steps(run) == list(range(1, 13))  # rows 5-8 of the killed run dropped, then relogged
    assert train_losses(run) == train_losses(tmp_path / "ref")  # resumed from step 4: bit for bit
    ref_w, w = export_weights(tmp_path / "ref"), export_weights(run)
    assert ref_w.keys() == w.keys() and all(torch.equal(ref_w[k], w[k]) for k in ref_w)
