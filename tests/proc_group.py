"""Run a command (torchrun and its workers, a launcher, a server) so that a test can always stop all of it.

torchrun starts every worker in a session of its own (torch/distributed/elastic/.../subprocess_handler.py:
``start_new_session=True``), so ``os.killpg(torchrun)`` alone leaves the workers running: measured here, a
SIGKILLed 2-rank toy run kept logging steps for seconds afterwards, and a resumed run could then find the
orphans' checkpoints. ``kill_all`` kills the command's own process group *and* the process group of every
descendant, found through /proc before anything is killed (once the agent is dead they are reparented).
"""
from __future__ import annotations

import os
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited meanwhile
        ppid = int(text.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces and parentheses
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_all(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """``sig`` to the command's process group and to every descendant's group, then reap the command."""
    found = descendants(proc.pid)
    for pid in [*reversed(found), proc.pid]:  # the workers first, as when a node dies under its agent
        try:
            os.killpg(os.getpgid(pid), sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    if sig == signal.SIGKILL:
        proc.wait(timeout=30)


def start(cmd: list[str], **kw) -> subprocess.Popen:
    """Popen in a session of its own (output merged into ``stdout`` as text unless told otherwise)."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("text", True)
    return subprocess.Popen(cmd, start_new_session=True, **kw)


@contextmanager
def group(cmd: list[str], **kw) -> Iterator[subprocess.Popen]:
    """``start`` as a context: whatever happens in the block (a failed assertion, a timeout, Ctrl-C), nothing
    the command started is left running afterwards."""
    proc = start(cmd, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            kill_all(proc)


def run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    """Run to the end; a command still running after ``timeout`` seconds is killed, all of it, and the test
    fails with the tail of its output."""
    with group(cmd, **kw) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_all(proc)
            out, err = proc.communicate()
            raise AssertionError(f"still running after {timeout:.0f} s (hang?), killed: {' '.join(map(str, cmd[:8]))} ...\n"
                                 f"{(out or '')[-3000:]}{(err or '')[-3000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
