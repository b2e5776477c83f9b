"""wandb (offline) across a requeue: the run stopped by a signal (exit 75, what SLURM's pre-emption does) and
the next process resuming it log into the same wandb run id, so `wandb sync` continues one run."""
import json
import os
import signal
import subprocess

from llmtts.distributed.signals import REQUEUE_EXIT_CODE
from train_runs import env, toy_cmd, train_losses, wait_for_step


def wandb_env(tmp_path) -> dict:
    e = {k: v for k, v in env().items() if not k.startswith("WANDB_")}
    e.update(WANDB_MODE="offline", NETRC=str(tmp_path / "no-netrc"), WANDB_SILENT="true")
    return e


def test_requeued_run_continues_the_same_wandb_run(tmp_path):
    run = tmp_path / "run"
    e = wandb_env(tmp_path)
    proc = subprocess.Popen(toy_cmd(run, ["trainer.max_steps=1000", "toy.step_sleep=0.05", "log.wandb=true"]),
                            env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_for_step(run, 3, proc)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == REQUEUE_EXIT_CODE
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    run_id = (run / "wandb" / "run_id.txt").read_text().strip()
    stopped = json.loads((run / "stopped.json").read_text())["step"]
    res = subprocess.run(toy_cmd(run, [f"trainer.max_steps={stopped + 2}", "log.wandb=true"]), env=e,
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert max(train_losses(run)) == stopped + 2
    runs = sorted((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 2, runs  # one local record per process ...
    assert all(r.name.endswith(f"-{run_id}") and list(r.glob("*.wandb")) for r in runs), runs  # ... one run id
    assert (run / "wandb" / "run_id.txt").read_text().strip() == run_id
