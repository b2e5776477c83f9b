"""Out of requeues: a pre-empted job that has used up `max_requeues` fails with one line saying where its
checkpoint is and to resubmit, instead of requeueing again (the submitit path; the plain sbatch script's limit is
tested on the real cluster in test_slurm_plain.py)."""
import json
import signal
import subprocess

import pytest

from llmtts.launch.task import JobFailed, StageTask


class Rank0JobEnv:  # the attributes of submitit.JobEnvironment that _after_stop reads
    job_id, global_rank = "4242", 0


def test_max_requeues_reached_fails_with_resubmit_message(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoints" / "step_00000030").mkdir(parents=True)
    (run / "checkpoints" / "step_00000030" / "COMPLETE").write_text("{}")
    (run / "stopped.json").write_text(json.dumps({"step": 30, "signal": int(signal.SIGUSR2), "exit_code": 75}))
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))  # must not be reached: no requeue
    task = StageTask(argv=["llm", "train", "--save-dir", "run"], cwd=str(tmp_path), code_dir="c", job_dir="j",
                     max_requeues=2)
    with pytest.raises(JobFailed) as err:
        task._after_stop(Rank0JobEnv(), rank=0, restart=2, received=[signal.SIGUSR2], save_dir="run")
    msg = str(err.value)
    assert "max_requeues=2 reached" in msg and "step 30" in msg and "submit the same command again" in msg
    assert "\n" not in msg and calls == []
