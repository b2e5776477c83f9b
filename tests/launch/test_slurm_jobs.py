"""End to end on the real local SLURM cluster: `llmtts launch --mode slurm` with the toy stage."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LOCAL_PROFILE = REPO / "slurm" / "local.yaml"

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def launch_cmd(job_root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "llmtts.cli", "launch", "--mode", "slurm", "--cluster", str(LOCAL_PROFILE),
            "--job-dir", str(job_root), *args]


def train_steps(run_dir: Path) -> list[int]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if r["split"] == "train"]


def complete_steps(run_dir: Path) -> list[int]:
    return sorted(int(d.name[5:]) for d in (run_dir / "checkpoints").glob("step_*") if (d / "COMPLETE").exists())


def job_dir_of(output: str) -> Path:
    m = re.search(r"^job dir: (.+)$", output, re.M)
    assert m, output
    return Path(m.group(1))


def task_log(job_dir: Path, job_id: str, task: int) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((job_dir / "slurm").glob(f"{job_id}_{task}_log.*")))


def test_two_task_training_job(slurm_cluster, job_root, tmp_path):
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(yaml.safe_dump({"trainer": {"max_steps": 12, "save_every": 6},
                                   "parallel": {"strategy": "ddp"}}))
    run = tmp_path / "run"
    proc = subprocess.Popen(
        launch_cmd(job_root, "--nproc-per-node", "2", "--wait", "--module", "llmtts.train.toy",
                   "train", "--config", str(cfg), "--save-dir", str(run), "trainer.log_every=1"),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Job hygiene: once submitted, editing the config must not change the job.
    deadline = time.time() + 120
    while not list(job_root.glob("*/job.json")) and time.time() < deadline:
        assert proc.poll() is None, "the launcher ended before it submitted the job"
        time.sleep(0.2)
    assert list(job_root.glob("*/job.json")), "the job was not submitted within 120 s"
    cfg.write_text(yaml.safe_dump({"trainer": {"max_steps": 999}}))
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, out + err
    assert "2 task(s) ok" in out

    job_dir = job_dir_of(out)
    job_id = json.loads((job_dir / "job.json").read_text())["job_id"]
    assert (job_dir / "code" / "llmtts" / "launch" / "task.py").is_file()
    assert yaml.safe_load((job_dir / "stage-config.yaml").read_text())["trainer"]["max_steps"] == 12
    assert yaml.safe_load((job_dir / "launch.yaml").read_text())["cluster"]["tasks_per_node"] == 2
    # Both ranks ran the stage as members of one 2-process group, each from the job's code snapshot.
    for rank in (0, 1):
        log = task_log(job_dir, job_id, rank)
        assert f"rank {rank}/2: python -m llmtts.train.toy train" in log
    assert json.loads((run / "env.json").read_text())["world_size"] == 2
    assert complete_steps(run) == [6, 12]
    assert max(train_steps(run)) == 12
    assert (run / "export" / "model.safetensors").is_file()


def wait_until(cond, proc, what: str, timeout: float = 300) -> None:  # a loaded machine: job start takes a while
    deadline = time.time() + timeout
    while not cond():
        assert proc.poll() is None, f"launcher exited before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_preempted_job_requeues_and_resumes(slurm_cluster, job_root, tmp_path):
    """USR2 (what SLURM sends before the time limit) -> checkpoint -> our requeue -> resume; then an
    admin's `scontrol requeue` (SIGTERM) -> checkpoint -> SLURM's requeue -> resume; right final step."""
    run = tmp_path / "run"
    max_steps = 60
    proc = subprocess.Popen(
        launch_cmd(job_root, "--nproc-per-node", "2", "--wait", "--module", "llmtts.train.toy",
                   "train", "--save-dir", str(run), "--resume", "none", "parallel.strategy=ddp",
                   f"trainer.max_steps={max_steps}", "trainer.save_every=10", "trainer.keep_last=10",
                   "trainer.log_every=1", "toy.step_sleep=0.1"),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: 10 in complete_steps(run), proc, "the first checkpoint")
        job_dir = next(job_root.iterdir())
        job_id = json.loads((job_dir / "job.json").read_text())["job_id"]
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)

        first = re.compile(r"requeueing job \d+ \(requeue 1 of max 3\); checkpoint at step (\d+)")
        wait_until(lambda: "requeued 1 time(s) so far" in task_log(job_dir, job_id, 0), proc, "the first requeue")
        k1 = int(first.search(task_log(job_dir, job_id, 0)).group(1))
        next_save = (k1 // 10 + 1) * 10
        wait_until(lambda: next_save in complete_steps(run), proc, f"checkpoint {next_save} after resuming")
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert "requeued 2 time(s)" in out, out

    log = task_log(job_dir, job_id, 0)
    m = re.search(r"stopped by SIGTERM \(checkpoint at step (\d+)\)", log)
    assert m, log
    k2 = int(m.group(1))
    assert 10 <= k1 < next_save <= k2 < max_steps and {k1, k2} <= set(complete_steps(run)), (k1, k2)
    # Each restart continued from the checkpoint instead of starting over (--resume none was the first run's).
    assert f"requeued 1 time(s) so far (max 3); resuming from step {k1}" in log
    assert f"requeued 2 time(s) so far (max 3); resuming from step {k2}" in log
    assert f"resumed at step {k1}" in log and f"resumed at step {k2}" in log
    steps = train_steps(run)
    assert steps == sorted(set(steps)) and min(steps) < k1 and steps[-1] == max_steps, steps
    assert complete_steps(run)[-1] == max_steps


def test_crashing_job_is_reported_failed(slurm_cluster, job_root, tmp_path):
    """Rank 1 crashes while rank 0 would wait forever: the job fails fast and the launcher says so."""
    # Missed, the crash would leave rank 0 sleeping for an hour: the launcher would still be waiting when this
    # call's timeout (a hang guard, not a speed bound) ends it, and the test fails on that.
    res = subprocess.run(
        launch_cmd(job_root, "--nproc-per-node", "2", "--wait", "--max-requeues", "0",
                   "--set", f"env.PYTHONPATH={Path(__file__).parent}", "--module", "launch_crash_helper"),
        cwd=tmp_path, capture_output=True, text=True, timeout=420)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAILED" in res.stderr and "exited with code 3" in res.stderr, res.stderr
    job_id = json.loads(next(job_root.glob("*/job.json")).read_text())["job_id"]
    state = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id],
                           capture_output=True, text=True).stdout.split()
    assert state and state[-1] == "FAILED"
