"""Training-core overhead and strategy step times on CPU.

    python benchmarks/trainer.py [--steps 60] [--hidden 512] [--skip-dist]

1. The core (Trainer + ToyStage) vs a bare hand-written loop doing the same work (forward, MSE,
   backward, clip, AdamW, schedule, loss.item()) on the same model and data, in this process,
   interleaved repeats; median step time per run, best run of each. Target: ratio <= 1.05.
2. Step times of ddp / fsdp2 / deepspeed ZeRO-1/2/3 on 2 CPU processes (torchrun, gloo), the same
   model with the same per-rank batch, from the run's own steps_per_s.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from llmtts.config import load_config
from llmtts.train.optim import Schedule, build_adamw
from llmtts.train.toy import ToyConfig, ToyStage, ToyMLP
from llmtts.train.trainer import Trainer

WARMUP = 5


def toy_overrides(steps: int, hidden: int, batch: int) -> list[str]:
    return [f"trainer.max_steps={steps}", f"model.hidden={hidden}", "model.layers=4", "model.in_dim=64",
            f"data.max_batch_size={batch}", "log.progress=false", "log.tensorboard=false", "trainer.log_every=10",
            "toy.val_batches=1"]


class TimedToy(ToyStage):
    """Records when each train_step starts and ends (so checkpoint/export time is excluded)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.marks: list[float] = []

    def train_step(self, batch, ctx):
        self.marks.append(time.perf_counter())
        return super().train_step(batch, ctx)


def _median_step_ms(marks: list[float]) -> float:
    """Median step-to-step time: robust to the spikes other processes cause on a shared machine."""
    return statistics.median(b - a for a, b in zip(marks, marks[1:])) * 1000


def core_ms_per_step(steps: int, hidden: int, batch: int) -> float:
    cfg = load_config(ToyConfig, None, toy_overrides(steps, hidden, batch))
    with tempfile.TemporaryDirectory() as d:
        stage = TimedToy(cfg, Path(d))
        Trainer(stage, cfg, Path(d), resume="none").fit()
    return _median_step_ms(stage.marks[WARMUP:])


def bare_ms_per_step(steps: int, hidden: int, batch: int) -> float:
    cfg = load_config(ToyConfig, None, toy_overrides(steps, hidden, batch))
    torch.manual_seed(cfg.trainer.seed)
    model = ToyMLP(cfg.model.in_dim, cfg.model.hidden, cfg.model.layers)
    opt = build_adamw(model.parameters(), cfg.trainer.optim)
    sched = Schedule(opt, cfg.trainer.optim, steps)
    data = iter(ToyStage(cfg, Path(".")).train_data(0, 1))
    marks = []
    for _ in range(steps):
        marks.append(time.perf_counter())
        x, y = next(data)
        loss = F.mse_loss(model(x).float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        loss.item()
    return _median_step_ms(marks[WARMUP:])


def dist_ms_per_step(strategy: list[str], steps: int, hidden: int, batch: int) -> float | None:
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "llmtts.train.toy", "train", "--save-dir", d, "--resume", "none"]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        p = subprocess.run(cmd + toy_overrides(steps, hidden, batch) + strategy, env=env, capture_output=True,
                           text=True, timeout=600)
        if p.returncode != 0:
            print(p.stderr[-2000:], file=sys.stderr)
            return None
        rows = [json.loads(line) for line in (Path(d) / "metrics.jsonl").read_text().splitlines()]
        rates = [r["steps_per_s"] for r in rows if r["split"] == "train" and r["step"] % 10 == 0 and r["step"] > 10]
        return 1000 / statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-dist", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)  # stable numbers on a shared machine
    core, bare = [], []
    for i in range(a.repeats):  # alternate which goes first, so warm-up/cache effects cancel
        for fn, out in ([(bare_ms_per_step, bare), (core_ms_per_step, core)][:: 1 if i % 2 == 0 else -1]):
            out.append(fn(a.steps, a.hidden, a.batch))
    b, c = min(bare), min(core)  # best run of each: the least disturbed by other processes
    print(f"model: 4x{a.hidden} MLP, batch {a.batch}, {a.steps} steps, 1 thread, "
          f"median step time, best of {a.repeats} runs")
    print(f"bare loop      {b:8.2f} ms/step")
    print(f"training core  {c:8.2f} ms/step")
    print(f"overhead ratio {c / b:8.3f}   (target <= 1.05)")
    if a.skip_dist:
        return
    print(f"\n2 CPU processes (gloo), per-rank batch {a.batch // 2}, ms/step:")
    for name, ov in [("ddp", ["parallel.strategy=ddp"]), ("fsdp2", ["parallel.strategy=fsdp2"]),
                     ("zero1", ["parallel.strategy=deepspeed", "parallel.deepspeed.zero_stage=1"]),
                     ("zero2", ["parallel.strategy=deepspeed", "parallel.deepspeed.zero_stage=2"]),
                     ("zero3", ["parallel.strategy=deepspeed", "parallel.deepspeed.zero_stage=3"])]:
        ms = dist_ms_per_step(ov, a.steps, a.hidden, a.batch // 2)
        print(f"{name:6s} {ms:8.2f}" if ms is not None else f"{name:6s}   failed")


if __name__ == "__main__":
    main()
