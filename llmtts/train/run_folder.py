"""One run per ``--save-dir``: a lock held for the run's life, and no fresh start over an earlier run's checkpoints.

Without these, two trainers on one folder overwrote each other's checkpoints and metrics (both exiting 0), and
``--resume none`` in a used folder deleted the new run's checkpoints (older, higher-step ones outranked them
when pruning) while the next ``--resume auto`` silently continued the old run.
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from llmtts.errors import UserError
from llmtts.train.checkpoint_dir import list_checkpoints

LOCK_FILE = ".lock"
# What a run folder written before the output marker holds (llmtts/cli_paths.py: such a folder is still ours).
RUN_FOLDER_NAMES = ("checkpoints", "metrics.jsonl")


class RunLock:
    """An exclusive POSIX lock (``lockf``) on ``RUN/.lock``, taken by rank 0 and held until ``release``.

    POSIX locks belong to the process: the kernel drops them when it exits (also on SIGKILL), forked
    DataLoader workers do not inherit them, and they work on NFS. The file is never deleted (deleting a lock
    file races with a process that has just opened it); it names the holder for the error message.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """None when the lock is ours, else who holds it (one line)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            return holder
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def lock_error(run_dir: Path, holder: str | None) -> UserError:
    who = f" ({holder})" if holder else ""
    return UserError(f"--save-dir {run_dir}: another trainer{who} is using this run folder; "
                     "wait for it to finish or use another --save-dir")


def check_fresh_start(run_dir: Path, resume: str) -> None:
    """``--resume none`` where checkpoints already exist would mix two runs in one folder: refuse."""
    if resume != "none":
        return
    found = list_checkpoints(Path(run_dir) / "checkpoints")
    if found:
        raise UserError(f"--resume none: {run_dir} already holds checkpoints of an earlier run (newest "
                        f"{found[-1][1].name}); use a new --save-dir for a new run, or --resume auto to continue it")
