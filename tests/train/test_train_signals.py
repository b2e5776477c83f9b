"""Process-level behaviour on strategy none: SIGKILL + --resume auto is exact; SIGTERM checkpoints and exits 75."""
import json
import os
import signal
import time

import pytest
import torch

from llmtts.distributed.signals import REQUEUE_EXIT_CODE
from llmtts.train.trainer import STOPPED_MARKER
from train_runs import (fit_inprocess, export_weights, kill_tree, popen_toy, train_losses, train_losses_tolerant, wait_for,
                        wait_for_step)

COMMON = ["trainer.max_steps=8", "trainer.save_every=4", "trainer.ema_decay=0.5"]



def test_sigkill_then_resume_auto_is_exact(tmp_path, caplog):
    fit_inprocess(tmp_path / "ref", *COMMON)
    run = tmp_path / "killed"
    proc = popen_toy(run, COMMON + ["toy.step_sleep=0.15"])
    wait_for(run / "checkpoints" / "step_00000004" / "COMPLETE", proc)
    wait_for_step(run, 6, proc)  # a known point after the checkpoint: rows 5 and 6 are logged, then lost
    kill_tree(proc)
    assert not (run / "export").exists()
    logged = train_losses_tolerant(run / "metrics.jsonl")
    assert {5, 6} <= set(logged) and max(logged) < 8
    # A newer checkpoint that never finished (no COMPLETE marker) must be skipped.
    half = run / "checkpoints" / "step_00000006"
    half.mkdir()
    (half / "trainer.json").write_text("{trunc")
    with caplog.at_level("WARNING"):
        res = fit_inprocess(run, *COMMON)
    assert "skipping checkpoint" in caplog.text and "step_00000006" in caplog.text
    assert res.step == 8
    assert train_losses(run) == train_losses(tmp_path / "ref")  # same loss at every step, bit for bit
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "train"]
    assert steps == list(range(1, 9))  # rows 5, 6.. logged by the killed run were dropped, then logged again
    assert all(train_losses(run)[s] == logged[s] for s in logged)  # ... with the same losses
    ref_w, w = export_weights(tmp_path / "ref"), export_weights(run)
    assert all(torch.equal(ref_w[k], w[k]) for k in ref_w)


def test_sigterm_checkpoints_and_exits_with_requeue_code(tmp_path):
    run = tmp_path / "run"
    proc = popen_toy(run, ["trainer.max_steps=1000", "toy.step_sleep=0.05"])
    metrics = run / "metrics.jsonl"
    t0 = time.time()
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.time() - t0 < 240, "run did not start"  # loaded 2-core machine: be patient
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    rc = proc.wait(timeout=180)
    assert rc == REQUEUE_EXIT_CODE == 75
    ckpts = sorted((run / "checkpoints").iterdir())
    assert len(ckpts) == 1 and (ckpts[0] / "COMPLETE").is_file()
    stopped_at = int(ckpts[0].name.split("_")[1])
    assert max(train_losses(run)) == stopped_at >= 3  # the step in flight was finished, then saved
    assert not (run / "export").exists()  # not finished: no export
    assert json.loads((run / STOPPED_MARKER).read_text())["step"] == stopped_at
    res = fit_inprocess(run, f"trainer.max_steps={stopped_at + 2}")
    assert not (run / STOPPED_MARKER).exists()
    assert res.step == stopped_at + 2 and sorted(train_losses(run)) == list(range(1, stopped_at + 3))


@pytest.mark.slow  # a subprocess
def test_ctrl_c_checkpoints_like_sigterm(tmp_path):
    """SIGINT (Ctrl-C, sent to the whole process group as a terminal does) checkpoints and exits 75."""
    run = tmp_path / "run"
    proc = popen_toy(run, ["trainer.max_steps=1000", "toy.step_sleep=0.05"])
    wait_for_step(run, 3, proc)
    os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=180)
    err = proc.stderr.read()
    assert rc == REQUEUE_EXIT_CODE, err
    assert "KeyboardInterrupt" not in err and "received SIGINT" in err
    ckpts = sorted((run / "checkpoints").iterdir())
    assert len(ckpts) == 1 and (ckpts[0] / "COMPLETE").is_file()
    stopped = json.loads((run / STOPPED_MARKER).read_text())
    assert stopped["signal"] == signal.SIGINT and stopped["step"] == int(ckpts[0].name.split("_")[1])
    assert max(train_losses(run)) == stopped["step"]
