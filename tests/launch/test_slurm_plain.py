"""SLURM without `llmtts launch`: plain `srun` (the trainer translates SLURM_* into a process group) and
slurm/sbatch-example.sh (USR2 -> checkpoint -> the script requeues -> resume; out of requeues: a clear message,
exit 75, no further requeue), on the real local cluster with the toy stage."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slurm, pytest.mark.slow]
TOY = [sys.executable, "-m", "llmtts.train.toy", "train", "log.progress=false", "log.tensorboard=false",
       "trainer.log_every=1"]


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    e.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    return e


def train_steps(run: Path) -> list[int]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["step"] for r in rows if r["split"] == "train"]


def complete_steps(run: Path) -> list[int]:
    return sorted(int(d.name[5:]) for d in (run / "checkpoints").glob("step_*") if (d / "COMPLETE").exists())


def sacct_state(job: str) -> str:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State,ExitCode", "-j", job], capture_output=True,
                         text=True, timeout=30).stdout.split()
    return out[-1] if out else ""


def wait_until(cond, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout  # generous: the machine has 2 cores shared with other jobs
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_plain_srun_forms_a_two_rank_group(slurm_cluster, tmp_path):
    run = tmp_path / "run"
    res = subprocess.run(["srun", "--partition=debug", "--ntasks=2", "--cpus-per-task=1", "--kill-on-bad-exit=1",
                          "--time=5", *TOY, "--save-dir", str(run), "parallel.strategy=ddp", "trainer.max_steps=4",
                          "trainer.save_every=4"], cwd=tmp_path, env=env(), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((run / "env.json").read_text())["world_size"] == 2
    assert train_steps(run) == [1, 2, 3, 4] and complete_steps(run) == [4]  # one logger, not two
    ckpt = run / "checkpoints" / "step_00000004"
    assert (ckpt / "rank_00000.pt").is_file() and (ckpt / "rank_00001.pt").is_file()
    assert (run / "export" / "model.safetensors").is_file()


def test_sbatch_example_requeues_resumes_and_stops_at_max_requeues(slurm_cluster, tmp_path):
    run, out = tmp_path / "run", tmp_path / "job.out"
    # The script's own #SBATCH lines ask for 8 GPUs: the command line overrides them for this 2-core node.
    submit = ["sbatch", "--parsable", "--partition=debug", "--ntasks-per-node=2", "--cpus-per-task=1",
              "--gpus-per-node=0", "--time=10", f"--output={out}", str(REPO / "slurm" / "sbatch-example.sh"),
              *TOY, "--save-dir", str(run), "--resume", "auto", "parallel.strategy=ddp", "trainer.max_steps=400",
              "trainer.save_every=5", "trainer.keep_last=20", "toy.step_sleep=0.1"]
    job = subprocess.run(submit, cwd=tmp_path, env={**env(), "MAX_REQUEUES": "1"}, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip().split(";")[0]
    log = lambda: out.read_text(errors="replace") if out.exists() else ""  # noqa: E731
    try:
        wait_until(lambda: 5 in complete_steps(run), "the first checkpoint")
        subprocess.run(["scancel", "--batch", "--signal=USR2", job], check=True, timeout=30)  # B:USR2, as SLURM
        resumed = re.compile(r"resumed at step (\d+)")  # (the resumed run removes stopped.json: read the log)
        wait_until(lambda: "restart 1 of max 1" in log() and resumed.search(log()), "the requeued run")
        k1 = int(resumed.search(log()).group(1))
        wait_until(lambda: (k1 // 5 + 1) * 5 in complete_steps(run), "a checkpoint after resuming")
        subprocess.run(["scancel", "--batch", "--signal=USR2", job], check=True, timeout=30)
        wait_until(lambda: sacct_state(job).startswith(("FAILED", "COMPLETED", "CANCELLED")), "the job's end")
    finally:
        subprocess.run(["scancel", job], capture_output=True, timeout=30)
    text = log()
    assert sacct_state(job) == "FAILED|75:0", text[-3000:]  # not finished, so not COMPLETED; not requeued again
    assert text.count("checkpointed; requeueing") == 1 and "restart 2" not in text, text[-3000:]
    assert "max requeues (1) reached; the run checkpointed: submit the job again to resume" in text
    k2 = json.loads((run / "stopped.json").read_text())["step"]
    assert 5 <= k1 < k2 < 400 and {k1, k2} <= set(complete_steps(run)), (k1, k2)
    assert train_steps(run) == list(range(1, k2 + 1))  # continued from k1, nothing repeated or lost
