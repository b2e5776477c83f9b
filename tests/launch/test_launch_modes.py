"""The launcher without SLURM: profiles, --dry-run, job directories, debug and local (torchrun) runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmtts.cli import main
from llmtts.config import ConfigError
from llmtts.launch.cluster import load_cluster
from llmtts.launch.jobdir import freeze_stage_config, new_job_dir, snapshot_code
from llmtts.launch.task import (StageTask, master_port, option_value, rank_environment, stop_signal,
                                with_option)

REPO = Path(__file__).resolve().parents[2]


def test_profiles_in_repo_load():
    example = load_cluster(REPO / "slurm" / "example.yaml")
    assert example.gpus_per_node == 8 and example.ntasks_per_node == 8 and example.signal_delay_s < example.time_min * 60
    local = load_cluster(REPO / "slurm" / "local.yaml", ["nodes=2", "tasks_per_node=3", "env.OMP_NUM_THREADS=4"])
    assert local.world_size == 6 and local.env["OMP_NUM_THREADS"] == "4"


def test_profile_errors_name_the_key(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("partiton: gpu\n")
    with pytest.raises(ConfigError, match=r"site.yaml: unknown key 'partiton'"):
        load_cluster(bad)
    with pytest.raises(ConfigError, match="signal_delay_s .* must be shorter than the time limit"):
        load_cluster(None, ["time_min=2", "signal_delay_s=120"])
    with pytest.raises(ConfigError, match="cluster profile not found"):
        load_cluster(tmp_path / "missing.yaml")


def test_cli_error_is_one_line(tmp_path, capsys):
    rc = main(["launch", "--mode", "slurm", "--set", "nodes=zero", "--dry-run", "llm", "train"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "'nodes'" in err


def test_bad_stage_arguments_fail_before_launch(tmp_path, capsys):
    rc = main(["launch", "--mode", "slurm", "--job-dir", str(tmp_path / "jobs"), "llm", "train", "--input-dir", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "--save-dir" in err and "nothing was launched" in err
    assert not (tmp_path / "jobs").exists()


def test_dry_run_prints_sbatch_script_and_creates_nothing(tmp_path, capsys):
    rc = main(["launch", "--mode", "slurm", "--cluster", str(REPO / "slurm" / "example.yaml"),
               "--job-dir", str(tmp_path / "jobs"), "--nodes", "2", "--time-min", "90", "--partition", "big",
               "--sbatch", "exclusive", "--sbatch", "mail-type=END", "--dry-run",
               "llm", "train", "--input-dir", "shards", "--save-dir", "runs/x"])
    script = capsys.readouterr().out
    assert rc == 0
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --time=90", "#SBATCH --partition=big", "#SBATCH --signal=USR2@300",
                 "#SBATCH --requeue", "#SBATCH --exclusive", "#SBATCH --mail-type=END", "--kill-on-bad-exit=1"):
        assert line in script, line
    # Logs and pickles live in a unique per-submission directory, never a %j-only folder.
    out_line = next(l for l in script.splitlines() if l.startswith("#SBATCH --output="))
    job_dir = Path(out_line.split("=", 1)[1]).parent.parent
    assert job_dir.parent == tmp_path / "jobs" and "-llm-train-" in job_dir.name
    assert f"export PYTHONPATH={job_dir}/code" in script
    assert not (tmp_path / "jobs").exists()


def test_job_dirs_are_unique_and_snapshot_code(tmp_path):
    a, b = new_job_dir(tmp_path, ["codec", "train"]), new_job_dir(tmp_path, ["codec", "train"])
    assert a != b and a.is_dir() and b.is_dir()
    code = snapshot_code(a)
    assert (code / "llmtts" / "launch" / "task.py").read_text() == (REPO / "llmtts" / "launch" / "task.py").read_text()
    assert not list(code.rglob("__pycache__"))
    # The snapshot, not the live checkout, is what a task imports, even when it runs in the repo root.
    task = StageTask(argv=["-c", "import llmtts; print(llmtts.__file__)"], cwd=str(REPO), code_dir=str(code),
                     job_dir=str(a), module="runpy_print")
    helper = tmp_path / "helper"
    helper.mkdir()
    (helper / "runpy_print.py").write_text("import llmtts\nprint(llmtts.__file__)\n")
    out = subprocess.run(task.command(0), cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": f"{code}:{helper}", "PATH": "/usr/bin:/bin"}).stdout
    assert out.strip() == str(code / "llmtts" / "__init__.py")


def test_stage_config_is_frozen(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("trainer: {max_steps: 3}\n")
    job = new_job_dir(tmp_path / "jobs", ["x"])
    argv = freeze_stage_config(["llm", "train", "--config=c.yaml", "--save-dir", "r"], job, tmp_path)
    assert option_value(argv, "--config") == str(job / "stage-config.yaml")
    cfg.write_text("trainer: {max_steps: 999}\n")
    assert yaml.safe_load((job / "stage-config.yaml").read_text())["trainer"]["max_steps"] == 3


def test_requeued_run_always_resumes():
    task = StageTask(argv=["llm", "train", "--resume", "none", "--save-dir", "r"], cwd=".", code_dir="c", job_dir="j")
    assert option_value(task.command(0), "--resume") == "none"
    assert option_value(task.command(2), "--resume") == "auto"
    assert with_option(["a", "--resume=x", "b"], "--resume", "auto") == ["a", "--resume", "auto", "b"]
    assert with_option(["a", "--resume", "x", "b", "--resume", "y"], "--resume", "auto") == ["a", "--resume", "auto", "b"]
    assert with_option(["a"], "--resume", "auto") == ["a", "--resume", "auto"]


def test_stop_signal_prefers_the_trainers_record(tmp_path):
    import signal

    assert stop_signal([], tmp_path) is None
    assert stop_signal([signal.SIGTERM], tmp_path) == signal.SIGTERM
    # SLURM signalled the stage before this wrapper: the trainer's stopped.json says it was USR2.
    (tmp_path / "stopped.json").write_text(json.dumps({"step": 7, "signal": int(signal.SIGUSR2), "exit_code": 75}))
    assert stop_signal([], tmp_path) == stop_signal([signal.SIGTERM], tmp_path) == signal.SIGUSR2


class FakeJobEnv:  # the attributes of submitit.JobEnvironment used by rank_environment
    job_id, global_rank, local_rank, num_tasks, num_nodes, node = "4242", 5, 1, 8, 2, 1
    hostnames = ["gpu-a", "gpu-b"]


def test_rank_environment_from_job_environment():
    env = rank_environment(FakeJobEnv(), restart=0)
    assert env == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", "NODE_RANK": "1",
                   "MASTER_ADDR": "gpu-a", "MASTER_PORT": str(master_port("4242", 0))}
    assert master_port("4242", 1) != master_port("4242", 0)
    assert all(20000 <= master_port(str(j), r) < 40000 for j in (1, 99999, 123456789) for r in range(3))


def test_debug_mode_trains_in_this_process(tmp_path, monkeypatch):
    run = tmp_path / "run"
    # Left over from an salloc shell: debug mode must not try to join a 4-process group.
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    rc = main(["launch", "--mode", "debug", "--module", "llmtts.train.toy", "train", "--save-dir", str(run),
               "trainer.max_steps=3", "trainer.log_every=2"])
    assert rc == 0
    env = json.loads((run / "env.json").read_text())
    assert env["world_size"] == 1
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["num_workers"] == 0 and cfg["parallel"]["strategy"] == "none"
    assert cfg["trainer"]["log_every"] == 2
    # The command line's own values win over the debug defaults; non-train commands get none.
    from llmtts.launch.debug import with_debug_defaults

    argv = with_debug_defaults(["llm", "train", "--save-dir", "r", "data.num_workers=3"])
    assert argv == ["llm", "train", "--save-dir", "r", "data.num_workers=3", "parallel.strategy=none"]
    assert with_debug_defaults(["codec", "encode", "--out", "x"]) == ["codec", "encode", "--out", "x"]


@pytest.mark.slow
def test_local_mode_runs_torchrun_with_two_ranks(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    import proc_group  # a hang kills the launcher, torchrun and its workers

    res = proc_group.run([sys.executable, "-m", "llmtts.cli", "launch", "--mode", "local", "--nproc-per-node", "2",
                          "--module", "launch_env_helper", str(tmp_path / "out")],
                         timeout=120, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    assert res.returncode == 0, res.stderr
    assert "torch.distributed.run --nproc-per-node=2 --standalone" in res.stderr
    ranks = [json.loads((tmp_path / "out" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [(e["RANK"], e["WORLD_SIZE"], e["LOCAL_RANK"]) for e in ranks] == [("0", "2", "0"), ("1", "2", "1")]
    assert ranks[0]["MASTER_PORT"] == ranks[1]["MASTER_PORT"] is not None


def test_local_multi_node_needs_master_addr(capsys):
    assert main(["launch", "--mode", "local", "--nnodes", "2", "--node-rank", "1", "llm", "train"]) == 2
    assert "--master-addr" in capsys.readouterr().err
    from llmtts.launch.local import torchrun_command

    cmd = torchrun_command(["llm", "train"], nproc_per_node=4, nnodes=2, node_rank=1, master_addr="n0",
                           master_port=1234)
    assert cmd[3:8] == ["--nproc-per-node=4", "--nnodes=2", "--node-rank=1", "--master-addr=n0", "--master-port=1234"]
    assert cmd[-4:] == ["-m", "llmtts.cli", "llm", "train"]
