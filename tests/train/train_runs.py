"""Helpers to run the toy stage in subprocesses (plain python or torchrun) and read its results."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

import proc_group

# Small, fast, deterministic defaults; tests add overrides.
BASE = ["log.progress=false", "log.tensorboard=false", "toy.val_batches=2", "trainer.log_every=1"]


def env() -> dict:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TORCH_CPP_LOG_LEVEL="ERROR")
    e.pop("WORLD_SIZE", None)
    e.pop("RANK", None)
    return e


def toy_cmd(run_dir: Path, overrides: list[str], nproc: int = 1, resume: str = "auto") -> list[str]:
    if nproc > 1:
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                "-m", "llmtts.train.toy"]
    else:
        head = [sys.executable, "-m", "llmtts.train.toy"]
    return head + ["train", "--save-dir", str(run_dir), "--resume", resume] + BASE + list(overrides)


def run_toy(run_dir: Path, overrides: list[str], nproc: int = 1, resume: str = "auto", timeout: float = 180,
            check: bool = True) -> subprocess.CompletedProcess:
    p = proc_group.run(toy_cmd(run_dir, overrides, nproc, resume), timeout, env=env(), stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        raise AssertionError(f"toy run failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return p


def popen_toy(run_dir: Path, overrides: list[str], nproc: int = 1) -> subprocess.Popen:
    # Own session; kill_tree reaches torchrun's workers too (each runs in a session of its own).
    return proc_group.start(toy_cmd(run_dir, overrides, nproc), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended ({proc.returncode}) before {path} appeared:\n{proc.stderr.read()[-4000:]}")
        if time.time() - t0 > timeout:
            kill_tree(proc)
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.05)


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 150) -> None:
    """Until metrics.jsonl has a train row for ``step``."""
    t0 = time.time()
    while True:
        f = Path(run_dir) / "metrics.jsonl"
        if f.exists() and step in train_losses_tolerant(f):
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended ({proc.returncode}) before step {step}:\n{proc.stderr.read()[-4000:]}")
        if time.time() - t0 > timeout:
            kill_tree(proc)
            raise AssertionError(f"timed out waiting for step {step}")
        time.sleep(0.05)


def train_losses_tolerant(f: Path) -> dict[int, float]:
    out = {}
    for line in f.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # being written
        if row.get("split") == "train":
            out[row["step"]] = row["loss"]
    return out


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the run: torchrun (or python) and every worker, as a crashed node would lose them."""
    proc_group.kill_all(proc)


def train_losses(run_dir: Path, key: str = "loss") -> dict[int, float]:
    out = {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["split"] == "train":
            out[row["step"]] = row[key]
    return out


def export_weights(run_dir: Path) -> dict:
    return load_file(str(Path(run_dir) / "export" / "model.safetensors"))


def fit_inprocess(run_dir, *overrides, resume="auto"):
    """The toy stage trained in this process with one thread, like the subprocesses (OMP_NUM_THREADS=1), so
    its losses and weights compare bit for bit with theirs."""
    import torch

    from llmtts.config import load_config
    from llmtts.train.toy import ToyConfig, ToyStage
    from llmtts.train.trainer import Trainer

    cfg = load_config(ToyConfig, None, BASE + list(overrides))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Trainer(ToyStage(cfg, run_dir), cfg, run_dir, resume=resume).fit()
    finally:
        torch.set_num_threads(threads)
