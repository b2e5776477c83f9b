"""Exact resume of a real stage: an uninterrupted run of N steps against a run stopped at step K (its final
checkpoint) and resumed with ``--resume auto`` to N. Same process, same thread count, same machine, so the
logged losses and the exported weights must agree bit for bit.

The interrupted run ends by ``trainer.max_steps=K``, so the stage must use a learning-rate schedule that does
not depend on max_steps (``trainer.optim.schedule=constant``); its end-of-run evaluation and export at step K
must not disturb what the resumed run does (the uninterrupted run neither evaluates nor exports there).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file

# Wall-clock rates differ from run to run; everything else in a train row must be identical.
TIMING_KEYS = ("time", "steps_per_s", "peak_mem_gib")


def rows(run: Path, split: str) -> dict[int, dict]:
    out = {}
    for line in (Path(run) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["split"] == split:
            out[row["step"]] = {k: v for k, v in row.items() if k not in TIMING_KEYS and not k.endswith("_per_s")}
    return out


def assert_exact_resume(train: Callable[[Path, int], int], tmp: Path, k: int, n: int,
                        weights: str = "export/model.safetensors") -> dict[int, dict]:
    """``train(run_dir, max_steps)`` runs the stage's CLI with ``--resume auto`` and returns its exit code."""
    ref, run = tmp / "uninterrupted", tmp / "resumed"
    assert train(ref, n) == 0
    assert train(run, k) == 0
    assert (run / "checkpoints" / f"step_{k:08d}" / "COMPLETE").is_file()
    assert train(run, n) == 0
    a, b = rows(ref, "train"), rows(run, "train")
    assert sorted(b) == sorted(a) == list(range(1, n + 1))
    for step in range(k + 1, n + 1):
        assert b[step] == a[step], f"step {step} after a resume at {k}: {b[step]} != {a[step]}"
    val_a, val_b = rows(ref, "val"), rows(run, "val")
    if n in val_a:  # the final evaluation scores the same weights on the same batches
        assert val_b[n] == val_a[n]
    wa, wb = load_file(str(ref / weights)), load_file(str(run / weights))
    assert wa.keys() == wb.keys()
    differ = [name for name in wa if not torch.equal(wa[name], wb[name])]
    assert not differ, f"exported weights differ after the resume: {differ[:5]}"
    return a


def checkpoint_tensors(ckpt: Path) -> dict[str, torch.Tensor]:
    """Every tensor a checkpoint's ``dcp/`` holds (models, optimizers, EMA), flattened to dotted names."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out_file = Path(ckpt).parent / f"{Path(ckpt).name}.pt"
    dcp_to_torch_save(str(Path(ckpt) / "dcp"), str(out_file))
    state = torch.load(out_file, weights_only=True)
    out_file.unlink()
    flat: dict[str, torch.Tensor] = {}

    def walk(prefix: str, obj) -> None:
        if isinstance(obj, torch.Tensor):
            flat[prefix] = obj
        elif isinstance(obj, dict):
            for key, value in obj.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        elif isinstance(obj, (list, tuple)):
            for i, value in enumerate(obj):
                walk(f"{prefix}.{i}", value)

    walk("", state)
    return flat


def train_steps_logged(run: Path) -> set[int]:
    """Train steps in metrics.jsonl while a run writes it (the last line may be half-written)."""
    f, steps = Path(run) / "metrics.jsonl", set()
    for line in (f.read_text().splitlines() if f.exists() else []):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("split") == "train":
            steps.add(row["step"])
    return steps


def assert_exact_after_sigkill(argv: Callable[[Path, int], list[str]], tmp: Path, save_every: int, n: int,
                               weights: str = "export/model.safetensors", timeout: float = 240) -> None:
    """A real stage SIGKILLed mid-run, wherever it happens to be, then resumed with ``--resume auto``, ends as an
    uninterrupted run does: the same rows for every step and the same exported weights, bit for bit.

    ``argv(run_dir, max_steps)``: the stage's ``llmtts`` arguments (with ``--resume auto`` and
    ``trainer.save_every=save_every``). The killed run is a subprocess (its whole process tree is killed, data
    workers included); it is killed once it has logged a step past its first checkpoint, so the kill lands after
    work that must be thrown away and redone — mid-step, mid-save or between steps, wherever the run is then. A
    run that finished before the kill fails the test (it would prove nothing)."""
    import os
    import subprocess
    import sys
    import time

    import proc_group
    from llmtts.cli import main

    ref, run = tmp / "uninterrupted", tmp / "killed"
    assert main(argv(ref, n)) == 0
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONUNBUFFERED="1")
    proc = proc_group.start([sys.executable, "-m", "llmtts.cli", *argv(run, n)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    first = run / "checkpoints" / f"step_{save_every:08d}" / "COMPLETE"
    deadline = time.monotonic() + timeout
    try:
        while not (first.is_file() and max(train_steps_logged(run), default=0) > save_every):
            assert proc.poll() is None, f"the run ended ({proc.returncode}) before the kill:\n{proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "the run never got past its first checkpoint"
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before the kill"
    finally:
        proc_group.kill_all(proc)
        proc.wait()
    killed_at = max(train_steps_logged(run))
    assert save_every < killed_at < n and not (run / "export").exists(), killed_at
    assert main(argv(run, n)) == 0
    a, b = rows(ref, "train"), rows(run, "train")
    assert sorted(b) == sorted(a) == list(range(1, n + 1)), "steps lost or logged twice after the kill"
    differ = [s for s in a if a[s] != b[s]]
    assert not differ, f"killed after step {killed_at}: rows differ at steps {differ[:5]}"
    wa, wb = load_file(str(ref / weights)), load_file(str(run / weights))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), "exported weights differ"
