"""A tiny synthetic stage that exercises the whole training core in seconds on a CPU.

Regression of a fixed smooth function with an MLP (``toy.gan=true`` adds a critic and a second
optimizer, like the GAN stages). Data is a deterministic table; the reader's position is resumable,
and rank ``r`` of ``W`` gets the ``r``-th slice of each global batch, so a run on W ranks with batch
B sees exactly the samples of a 1-rank run with batch W*B.

    python -m llmtts.train.toy train --save-dir runs/toy trainer.max_steps=20
    torchrun --nproc_per_node 2 -m llmtts.train.toy train --save-dir runs/toy parallel.strategy=ddp
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from llmtts.train.config import DataConfig, LogConfig, ParallelConfig, TrainerConfig
from llmtts.train.stage import Stage


@dataclass
class ToyModelConfig:
    in_dim: int = 8
    hidden: int = 32
    layers: int = 2


@dataclass
class ToyOptions:
    num_samples: int = 4096   # size of the (cycled) training table
    val_batches: int = 4      # validation batches per rank
    val_extra_per_rank: int = 0  # rank r gets r * this many more (uneven data must not hang eval)
    step_sleep: float = 0.0   # seconds slept per step, to give signal tests time to act
    gan: bool = False         # add a critic ("disc") with its own optimizer
    nan_at_step: int = 0      # make the loss NaN at this step (1-based; 0 = never), to test the guard
    hang_in_save: int = 0     # the Nth checkpoint save of this process stops half-written until killed (0 = never)


@dataclass
class ToyConfig:
    model: ToyModelConfig = field(default_factory=ToyModelConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(max_batch_size=8))
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_steps=50, log_every=1))
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    log: LogConfig = field(default_factory=lambda: LogConfig(tensorboard=False))
    toy: ToyOptions = field(default_factory=ToyOptions)


class ToyMLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int, layers: int, out_dim: int = 1):
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU())
                                    for _ in range(layers))
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)


def make_table(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w = torch.randn(dim, generator=torch.Generator().manual_seed(12345))
    y = torch.sin(x @ w).unsqueeze(1) + 0.1 * torch.cos(x.sum(1, keepdim=True))
    return x, y


class ToyData:
    """Endless, resumable: the state is the number of batches this rank has yielded."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch: int, rank: int, world: int, limit: int | None = None):
        self.x, self.y, self.batch, self.rank, self.world, self.limit = x, y, batch, rank, world, limit
        self.position = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while self.limit is None or self.position < self.limit:
            start = (self.position * self.world + self.rank) * self.batch
            idx = torch.arange(start, start + self.batch) % len(self.x)
            self.position += 1
            yield self.x[idx], self.y[idx]

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


class ToyStage(Stage):
    name = "toy"
    unit = "samples"

    def build_models(self) -> dict[str, nn.Module]:
        m = self.cfg.model
        models = {"model": ToyMLP(m.in_dim, m.hidden, m.layers)}
        if self.cfg.toy.gan:
            models["disc"] = ToyMLP(m.in_dim + 1, m.hidden, 1)
        return models

    def parallelize(self, models, pctx):
        return {k: pctx.wrap(m, blocks=list(m.blocks)) for k, m in models.items()}

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"main": ["model"], "disc": ["disc"]} if self.cfg.toy.gan else {"main": ["model"]}

    def optimizer_overrides(self) -> dict[str, dict]:
        return {"disc": {"lr": self.cfg.trainer.optim.lr * 0.5}} if self.cfg.toy.gan else {}

    def state_dict(self) -> dict:
        # Called while a checkpoint is being written: models and optimizers are in .tmp_step_N/dcp/, the rank
        # file, trainer.json and COMPLETE are not. toy.hang_in_save stops one save there, for crash tests.
        self._saves = getattr(self, "_saves", 0) + 1
        while self._saves == self.cfg.toy.hang_in_save:
            time.sleep(1)
        return {}

    def train_data(self, rank: int, world_size: int) -> ToyData:
        x, y = make_table(self.cfg.toy.num_samples, self.cfg.model.in_dim, self.cfg.data.seed)
        return ToyData(x, y, self.cfg.data.max_batch_size, rank, world_size)

    def val_data(self, rank: int, world_size: int):
        x, y = make_table(256, self.cfg.model.in_dim, self.cfg.data.seed + 1)
        limit = self.cfg.toy.val_batches + rank * self.cfg.toy.val_extra_per_rank
        return ToyData(x, y, self.cfg.data.max_batch_size, rank, world_size, limit=limit)

    def units_in_batch(self, batch) -> float:
        return float(len(batch[0]))

    def train_step(self, batch, ctx) -> dict[str, float]:
        x, y = (t.to(ctx.device) for t in batch)
        model = ctx.models["model"]
        out: dict[str, float] = {}
        with ctx.autocast():
            pred = model(x).float()
            mse = F.mse_loss(pred, y)
        loss = mse
        if self.cfg.toy.gan:
            disc = ctx.models["disc"]
            with ctx.autocast():
                logits = disc(torch.cat([torch.cat([x, y], 1), torch.cat([x, pred.detach()], 1)])).float()
                real, fake = logits.chunk(2)
                loss_d = F.softplus(-real).mean() + F.softplus(fake).mean()
            ctx.backward(loss_d, "disc")
            ctx.step("disc")
            with ctx.frozen("disc"), ctx.autocast():
                adv = F.softplus(-disc(torch.cat([x, pred], 1)).float()).mean()
            loss = mse + 0.01 * adv
            out["loss_d"] = loss_d.item()
        if self.cfg.toy.nan_at_step == ctx.global_step + 1:
            loss = loss * float("nan")
        ctx.backward(loss, "main")
        ctx.step("main")
        if self.cfg.toy.step_sleep:
            time.sleep(self.cfg.toy.step_sleep)
        out.update(loss=loss.item(), mse=mse.item())
        return out

    @torch.no_grad()
    def eval_step(self, batch, ctx) -> dict[str, float]:
        x, y = (t.to(ctx.device) for t in batch)
        return {"mse": F.mse_loss(ctx.models["model"](x).float(), y).item()}

    def on_eval_end(self, ctx, step: int) -> None:
        # Exercise the sample loggers the real stages use (rank 0 writes, others no-op).
        w = self._first_weight(ctx)
        if w.numel():  # ZeRO-3 partitions leave an empty placeholder
            ctx.logger.log_spectrogram("toy_weights", w, step)

    def _first_weight(self, ctx) -> torch.Tensor:
        return ctx.strategy.full_tensor(ctx.unwrap("model").inp.weight)  # collective under fsdp2

    def export(self, models: dict[str, nn.Module], out_dir: Path) -> None:
        save_file({k: v.contiguous() for k, v in models["model"].state_dict().items()}, str(out_dir / "model.safetensors"))
        (out_dir / "config.json").write_text(json.dumps({"model": asdict(self.cfg.model)}, indent=1))


def main(argv: list[str] | None = None) -> int:
    from llmtts.train.entry import main_for

    return main_for(ToyConfig, lambda cfg, args: ToyStage(cfg, Path(args.save_dir)), "python -m llmtts.train.toy", argv)


if __name__ == "__main__":
    sys.exit(main())
