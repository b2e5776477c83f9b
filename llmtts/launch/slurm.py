"""``--mode slurm``: submit a stage as a SLURM job with submitit (one task per GPU), optionally wait.

Each srun task runs ``llmtts.launch.task.StageTask`` (rank variables, signal forwarding, requeue).
"""
from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from llmtts.errors import UserError
from llmtts.launch.cluster import ClusterConfig
from llmtts.launch.jobdir import freeze_stage_config, new_job_dir, snapshot_code, write_launch_record
from llmtts.launch.task import StageTask
from llmtts.optional import require

# sacct states after which a job will not run again.
TERMINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                   "BOOT_FAIL", "DEADLINE", "REVOKED")


def sbatch_parameters(cluster: ClusterConfig, job_dir: Path, array: int = 0) -> dict[str, Any]:
    """submitit's SLURM parameters (its names for sbatch flags; ``slurm_``-prefixed for the
    ``AutoExecutor``) from a profile."""
    params: dict[str, Any] = {
        "job_name": cluster.job_name,
        "time": cluster.time_min,
        "nodes": 1 if array else cluster.nodes,
        "ntasks_per_node": 1 if array else cluster.ntasks_per_node,
        "cpus_per_task": cluster.cpus_per_task,
        "signal_delay_s": cluster.signal_delay_s,
        # A task that fails must take the others down (they would wait in a collective forever).
        "srun_args": ["--kill-on-bad-exit=1", *cluster.srun_args],
        "stderr_to_stdout": False,
    }
    if cluster.gpus_per_node:
        params["gpus_per_node"] = cluster.gpus_per_node
    if cluster.mem_gb:
        params["mem"] = f"{int(cluster.mem_gb * 1024)}MB"
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(cluster, key):
            params[key] = getattr(cluster, key)
    extra = {k.replace("_", "-"): v for k, v in cluster.sbatch.items()}
    # The batch script (and submitit's unpickling) runs in the job dir, so `import llmtts` there finds
    # the snapshot on PYTHONPATH, not a checkout in the submitter's directory. Tasks chdir back.
    extra.setdefault("chdir", str(job_dir))
    extra.setdefault("requeue", True)  # allow `scontrol requeue` even where the site default is --no-requeue
    params["additional_parameters"] = extra
    return params


def setup_lines(cluster: ClusterConfig, code_dir: Path) -> list[str]:
    return [*cluster.setup, f"export PYTHONPATH={shlex.quote(str(code_dir))}${{PYTHONPATH:+:$PYTHONPATH}}"]


def _python(cluster: ClusterConfig) -> str:
    return cluster.python or shlex.quote(sys.executable)


def sbatch_script(cluster: ClusterConfig, job_dir: Path, array: int = 0) -> str:
    """The batch script submitit would write, for ``--dry-run`` (works without SLURM installed)."""
    _make_sbatch_string = require("submitit.slurm.slurm", "--mode slurm")._make_sbatch_string

    folder = job_dir / "slurm"
    params = sbatch_parameters(cluster, job_dir, array)
    if array:
        params["map_count"] = array
    command = f"{_python(cluster)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return _make_sbatch_string(command=command, folder=folder, setup=setup_lines(cluster, job_dir / "code"), **params)


def submit(argv: list[str], cluster: ClusterConfig, *, job_root: str | None = None, module: str = "llmtts.cli",
           array: int = 0, dry_run: bool = False, wait: bool = False, poll_s: float = 2.0) -> int:
    cwd = Path.cwd()
    root = job_root or cluster.job_root
    if dry_run:
        job_dir = new_job_dir(root, argv, create=False)
        print(sbatch_script(cluster, job_dir, array))
        print(f"# each task runs: python -m {module} {shlex.join(argv)}", file=sys.stderr)
        return 0
    if shutil.which("sbatch") is None:
        raise UserError("--mode slurm: `sbatch` not found; run on a SLURM login node "
                        "(or start the local test cluster: bash slurm/local-cluster.sh start)")
    submitit = require("submitit", "--mode slurm")
    job_dir = new_job_dir(root, argv)
    code_dir = snapshot_code(job_dir)
    run_argv = freeze_stage_config(argv, job_dir, cwd)
    task = StageTask(argv=run_argv, cwd=str(cwd), code_dir=str(code_dir), job_dir=str(job_dir), module=module,
                     max_requeues=cluster.max_requeues, env=dict(cluster.env), array=bool(array))
    write_launch_record(job_dir, {"mode": "slurm", "module": module, "argv": run_argv, "cwd": str(cwd),
                                  "array": array, "cluster": cluster})
    executor = submitit.AutoExecutor(folder=job_dir / "slurm", cluster="slurm",
                                     slurm_max_num_timeout=cluster.max_requeues, slurm_python=cluster.python or None)
    params = {"setup": setup_lines(cluster, code_dir), **sbatch_parameters(cluster, job_dir)}
    executor.update_parameters(**{f"slurm_{k}": v for k, v in params.items()})
    try:
        jobs = executor.submit_array([task] * array) if array else [executor.submit(task)]
    except Exception as exc:  # submitit wraps sbatch's message; show it as one line
        shutil.rmtree(job_dir, ignore_errors=True)  # nothing was queued: leave no half job dir behind
        raise UserError(f"sbatch refused the job: {str(exc).strip().splitlines()[-1]}") from None
    job_id = jobs[0].job_id.split("_")[0]
    (job_dir / "job.json").write_text(json.dumps({"job_id": job_id, "jobs": [j.job_id for j in jobs],
                                                  "submitted": time.time()}, indent=1))
    print(f"submitted SLURM job {job_id} ({len(jobs)} array element(s))" if array else
          f"submitted SLURM job {job_id} ({cluster.world_size} task(s))")
    print(f"job dir: {job_dir}")
    print(f"logs:    {job_dir / 'slurm'}/{job_id}_<rank>_log.err (stage output; .out: submitit)")
    if not wait:
        return 0
    try:
        return wait_for(jobs, poll_s=poll_s)
    except KeyboardInterrupt:
        print(f"\nstopped waiting; job {job_id} keeps running (scancel {job_id} to stop it)", file=sys.stderr)
        return 130


def job_state(job_id: str) -> str:
    """Current state from ``sacct`` (accounting), else ``squeue``; ``UNKNOWN`` when neither knows."""
    import subprocess

    for cmd in (["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job_id],
                ["squeue", "-h", "-t", "all", "-o", "%i|%T", "-j", job_id]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        states = [line.split("|")[1] for line in out.splitlines() if line.split("|")[0] == job_id]
        if states:
            return states[-1].split()[0]  # "CANCELLED by 0" -> "CANCELLED"
    return "UNKNOWN"


def wait_for(jobs: list, poll_s: float = 2.0) -> int:
    """Block until every job ends; 0 when all tasks succeeded, 1 otherwise (the reason is printed).

    Polls result files and ``sacct`` (forced, not submitit's growing back-off), so a job that died
    without writing a result is reported within seconds instead of being waited on.
    """
    pending = list(jobs)
    while pending:
        still = []
        for job in pending:
            tasks = job._sub_jobs or [job]
            if all(t.paths.result_pickle.exists() for t in tasks):
                continue
            if job_state(job.job_id) in TERMINAL_STATES:
                continue
            still.append(job)
        pending = still
        if pending:
            time.sleep(poll_s)
    return 0 if all([report(job) for job in jobs]) else 1


def report(job) -> bool:
    """Print how a finished job ended; True when every task returned normally."""
    from submitit.core.utils import pickle_load

    tasks = job._sub_jobs or [job]
    outcomes = []
    for t in tasks:
        outcomes.append(pickle_load(t.paths.result_pickle) if t.paths.result_pickle.exists() else None)
    if all(o is not None and o[0] == "success" for o in outcomes):
        first = outcomes[0][1] or {}
        print(f"job {job.job_id} COMPLETED: {len(tasks)} task(s) ok, requeued {first.get('restarts', 0)} time(s)"
              + (f", last resumed from step {first['resumed_from']}" if first.get("resumed_from") is not None else ""))
        return True
    state = job_state(job.job_id)
    print(f"job {job.job_id} FAILED (SLURM state {state})", file=sys.stderr)
    if state in ("TIMEOUT", "CANCELLED", "PREEMPTED", "NODE_FAIL"):
        print("  (a training stage checkpoints on SLURM's SIGTERM: submit the same command again to resume)",
              file=sys.stderr)
    for i, (t, o) in enumerate(zip(tasks, outcomes)):
        if o is None:
            print(f"  task {i}: no result (killed or died); log: {t.paths.stdout}", file=sys.stderr)
        elif o[0] == "error":
            print(f"  task {i}: {o[1].strip().splitlines()[-1]}\n  log: {t.paths.stderr}", file=sys.stderr)
    return False
