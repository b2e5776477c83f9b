"""One unique directory per submission: code snapshot, frozen config, submitit files, logs.

Why: editing the repo (or the YAML) after submitting must not change a queued job, and a job id
reused after a controller reset must never pick up an old job's result (submitit folders named
only by ``%j`` returned a stale pickle after slurmctld state was wiped).

    JOB_DIR/code/llmtts/        the package as it was at submission (first on the tasks' PYTHONPATH)
    JOB_DIR/stage-config.yaml   copy of the stage's --config file (the command line points to it)
    JOB_DIR/launch.yaml         resolved launch settings: mode, cluster profile, command, cwd, git commit
    JOB_DIR/job.json            SLURM job id(s) once submitted
    JOB_DIR/slurm/              submitit's sbatch script, pickles and per-task logs (%j_%t_log.out/err)
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

import llmtts
from llmtts.errors import UserError
from llmtts.launch.task import option_value, with_option
from llmtts.redact import redact_argv

PACKAGE_DIR = Path(llmtts.__file__).resolve().parent


def new_job_dir(root: str | Path, argv: list[str], create: bool = True) -> Path:
    """``ROOT/<time>-<stage>-<random>``: unique even for submissions in the same second."""
    words = [a for a in argv[:2] if not a.startswith("-")]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", "-".join(words)).strip("-")[:40] or "job"
    path = Path(root).resolve() / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{uuid.uuid4().hex[:8]}"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            raise UserError(f"--job-dir {root}: cannot create job directory {path}: {exc.strerror}") from None
    return path


def snapshot_code(job_dir: Path) -> Path:
    """Copy the ``llmtts`` package into ``job_dir/code`` and return the PYTHONPATH entry."""
    code = job_dir / "code"
    shutil.copytree(PACKAGE_DIR, code / "llmtts", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return code


def freeze_stage_config(argv: list[str], job_dir: Path, cwd: Path) -> list[str]:
    """Copy the ``--config`` file into the job dir and point the command line at the copy."""
    cfg = option_value(argv, "--config")
    if cfg is None:
        return list(argv)
    src = Path(cwd, cfg)
    if not src.is_file():
        raise UserError(f"--config {cfg}: file not found")
    dst = job_dir / "stage-config.yaml"
    shutil.copyfile(src, dst)
    return with_option(argv, "--config", str(dst))


def git_commit(path: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    if out.returncode != 0:
        return ""
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def write_launch_record(job_dir: Path, record: dict[str, Any]) -> None:
    def plain(v):
        return asdict(v) if hasattr(v, "__dataclass_fields__") else v

    data = {k: plain(v) for k, v in record.items()}
    if "argv" in data:  # a record, never read back to run: no secrets in it
        data["argv"] = redact_argv(data["argv"])
    data.setdefault("git_commit", git_commit(PACKAGE_DIR.parent))
    (job_dir / "launch.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False))
