"""What runs inside a SLURM job: one ``StageTask`` per srun task (one per GPU).

submitit unpickles the task in each srun task and calls it. The task exports the torchrun-style
variables (``RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT``) from submitit's
``JobEnvironment`` and runs the stage command (``llmtts <stage> ...``) as a child process, using
the job's code snapshot. A child, not a call in this process, because:
- the trainer installs its own SIGTERM/SIGUSR2 handlers (``llmtts.distributed.signals``) and exits with
  ``REQUEUE_EXIT_CODE`` after checkpointing; this process forwards the signals and reads that code;
- a stage that crashes (or calls ``sys.exit``) can never leave a half-written submitit result.

Pre-emption: SLURM sends SIGUSR2 ``signal_delay_s`` before the time limit (``--signal``), or a user
sends it (``scancel --signal=USR2 JOBID``). The trainer finishes its step, checkpoints and exits 75;
rank 0 then runs ``scontrol requeue`` (up to ``max_requeues`` times) and the job starts again with
``--resume auto``. On SIGTERM alone (scancel, time limit, an admin's ``scontrol requeue``) SLURM
decides the job's fate; the task only makes sure the trainer checkpointed.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("llmtts.launch")

# Kept equal to llmtts.distributed.signals.REQUEUE_EXIT_CODE without importing torch in this wrapper.
REQUEUE_EXIT_CODE = 75
# Written by the trainer into the run dir when a signal stopped it (llmtts.train.trainer.STOPPED_MARKER).
STOPPED_MARKER = "stopped.json"
FORWARDED_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


# `python -m MODULE` would put the working directory first on sys.path, so a job submitted from the
# repo root would import the live checkout instead of its snapshot: move it to the end instead.
BOOTSTRAP = ("import runpy, sys; sys.path.append(sys.path.pop(0)); mod = sys.argv.pop(1); "
             "runpy.run_module(mod, run_name='__main__', alter_sys=True)")


class JobFailed(RuntimeError):
    """The stage command failed in a task; submitit stores it as the job's error."""


def master_port(job_id: str, restart: int) -> int:
    """A port derived from the job id (two jobs sharing a node don't collide) and the restart
    number (a requeued run never races the previous run's socket)."""
    digits = "".join(c for c in job_id if c.isdigit()) or "0"
    return 20000 + (int(digits) * 11 + restart) % 20000


def rank_environment(job_env: Any, restart: int) -> dict[str, str]:
    """torchrun's variables from a submitit ``JobEnvironment`` (any object with its attributes)."""
    return {
        "RANK": str(job_env.global_rank),
        "WORLD_SIZE": str(job_env.num_tasks),
        "LOCAL_RANK": str(job_env.local_rank),
        "LOCAL_WORLD_SIZE": str(max(1, job_env.num_tasks // max(1, job_env.num_nodes))),
        "NODE_RANK": str(job_env.node),
        "MASTER_ADDR": job_env.hostnames[0],
        "MASTER_PORT": str(master_port(str(job_env.job_id), restart)),
    }


def option_value(argv: list[str], name: str) -> str | None:
    """Value of ``--name X`` / ``--name=X`` in a command line (last one wins, like argparse)."""
    value = None
    for i, tok in enumerate(argv):
        if tok == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif tok.startswith(name + "="):
            value = tok.split("=", 1)[1]
    return value


def with_option(argv: list[str], name: str, value: str) -> list[str]:
    """``argv`` with ``--name X`` / ``--name=X`` set to ``value`` in place (appended if absent;
    repeats, which argparse would resolve to the last, are dropped)."""
    out, i, done = [], 0, False
    while i < len(argv):
        tok = argv[i]
        if tok == name or tok.startswith(name + "="):
            if not done:
                out += [name, value]
                done = True
            i += 2 if tok == name else 1
            continue
        out.append(tok)
        i += 1
    return out if done else out + [name, value]


def last_error_line(log_path: Path, max_bytes: int = 20000) -> str:
    """The last line mentioning an error in a task's stderr log (what the stage printed), or ''."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - max_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    hits = [l.strip() for l in lines if "error" in l.lower() and "submitit" not in l]
    return hits[-1][:300] if hits else ""


def stop_signal(received: list[int], run_dir: Path | None) -> int | None:
    """Which signal stopped the stage. SLURM may signal the stage before this wrapper (seen: 3 s
    apart), so the trainer's own record (``RUN/stopped.json``, rank 0) counts as well."""
    if signal.SIGUSR2 in received:
        return signal.SIGUSR2
    try:
        return int(json.loads((run_dir / STOPPED_MARKER).read_text())["signal"])
    except (TypeError, OSError, ValueError, KeyError):
        return received[0] if received else None


def latest_checkpoint_step(save_dir: Path) -> int | None:
    """Step of the newest complete checkpoint (its ``COMPLETE`` marker exists), for the job log."""
    steps = []
    for d in (save_dir / "checkpoints").glob("step_*"):
        if (d / "COMPLETE").is_file() and d.name[5:].isdigit():
            steps.append(int(d.name[5:]))
    return max(steps) if steps else None


@dataclass
class StageTask:
    """A picklable callable: the stage command line plus where and how to run it."""

    argv: list[str]                 # after the program: e.g. ["llm", "train", "--save-dir", ...]
    cwd: str                        # the submitter's working directory (relative paths in argv)
    code_dir: str                   # snapshot of the llmtts package, first on PYTHONPATH
    job_dir: str
    module: str = "llmtts.cli"      # python -m MODULE argv...
    max_requeues: int = 5
    env: dict[str, str] = field(default_factory=dict)
    # SLURM array jobs: each array element is one rank of a process-group-free map.
    array: bool = False

    def command(self, restart: int) -> list[str]:
        argv = list(self.argv)
        # A requeued run must continue, whatever the first run was told.
        if restart > 0 and option_value(argv, "--resume") is not None:
            argv = with_option(argv, "--resume", "auto")
        return [sys.executable, "-u", "-c", BOOTSTRAP, self.module, *argv]

    def child_env(self, job_env: Any, restart: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        if self.array:
            # Array elements share no process group: rank = element, world = element count.
            env.update(RANK=os.environ.get("SLURM_ARRAY_TASK_ID", "0"),
                       WORLD_SIZE=os.environ.get("SLURM_ARRAY_TASK_COUNT", "1"), LOCAL_RANK="0")
        else:
            env.update(rank_environment(job_env, restart))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (self.code_dir, env.get("PYTHONPATH", "")) if p)
        env["LLMTTS_JOB_DIR"] = self.job_dir
        env["LLMTTS_RESTART_COUNT"] = str(restart)
        return env

    def __call__(self) -> dict[str, Any]:
        import submitit

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        job_env = submitit.JobEnvironment()
        restart = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        env = self.child_env(job_env, restart)
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        save_dir = option_value(self.argv, "--save-dir")
        resumed_from = latest_checkpoint_step(Path(self.cwd, save_dir)) if save_dir else None
        if rank == 0:
            log.info("job %s on %s: %d task(s), requeued %d time(s) so far (max %d); %s", job_env.job_id,
                     socket.gethostname(), world, restart, self.max_requeues,
                     f"resuming from step {resumed_from}" if resumed_from is not None else "no checkpoint yet")
        cmd = self.command(restart)
        log.info("rank %d/%d: python -m %s", rank, world, " ".join(cmd[4:]))

        received: list[int] = []
        proc = subprocess.Popen(cmd, cwd=self.cwd, env=env)

        def forward(signum, frame):  # the trainer treats repeats as one request
            received.append(signum)
            log.warning("rank %d: got %s, passing it to the stage", rank, signal.Signals(signum).name)
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass

        for s in FORWARDED_SIGNALS:
            signal.signal(s, forward)
        rc = proc.wait()
        for s in FORWARDED_SIGNALS:  # a late repeat must not kill us while we requeue
            signal.signal(s, signal.SIG_IGN)

        result = {"rank": rank, "world_size": world, "returncode": rc, "restarts": restart,
                  "resumed_from": resumed_from}
        if rc == 0:
            return result
        # Stopped by a signal: checkpointed (75), or killed before the trainer's handlers existed.
        stopped = rc == REQUEUE_EXIT_CODE or (received and rc in (-signal.SIGUSR2, -signal.SIGTERM))
        if stopped:
            self._after_stop(job_env, rank, restart, received, save_dir)
        why = last_error_line(job_env.paths.stderr)
        raise JobFailed(f"rank {rank}: `{' '.join(cmd[4:])}` exited with code {rc}" + (f": {why}" if why else ""))

    def _after_stop(self, job_env: Any, rank: int, restart: int, received: list[int], save_dir: str | None) -> None:
        """Requeue on our own pre-emption signal; never leave a submitit result for a job that goes on."""
        run_dir = Path(self.cwd, save_dir) if save_dir else None
        step = latest_checkpoint_step(run_dir) if run_dir else None
        if stop_signal(received, run_dir) != signal.SIGUSR2:
            # SIGTERM from SLURM (scancel / time limit / requeue by someone else): its decision.
            log.warning("rank %d: stopped by SIGTERM (checkpoint at step %s); leaving the job to SLURM", rank, step)
            raise SystemExit(0)
        if job_env.global_rank != 0:  # the job's first srun task requeues (in an array: each element's)
            raise SystemExit(0)  # exit 0 so srun --kill-on-bad-exit spares rank 0 while it requeues
        if restart >= self.max_requeues:
            raise JobFailed(f"pre-empted after {restart} requeue(s), max_requeues={self.max_requeues} reached; "
                            f"checkpoint at step {step}: submit the same command again to resume")
        log.warning("requeueing job %s (requeue %d of max %d); checkpoint at step %s",
                    job_env.job_id, restart + 1, self.max_requeues, step)
        try:
            subprocess.run(["scontrol", "requeue", str(job_env.job_id)], check=True, timeout=60,
                           capture_output=True, text=True)
        except (OSError, subprocess.SubprocessError) as exc:
            err = getattr(exc, "stderr", "") or exc
            raise JobFailed(f"scontrol requeue {job_env.job_id} failed: {err}") from None
        # SLURM has already marked the job REQUEUED (scontrol is synchronous): leave now, without a
        # submitit result, so the node frees up at once and the next run starts.
        raise SystemExit(0)
