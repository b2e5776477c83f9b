"""AdamW with decoupled weight decay on matrices only, and the learning-rate schedules."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterable

import torch
from torch import nn

from llmtts.errors import UserError
from llmtts.train.config import OptimConfig


def optim_config_for(base: OptimConfig, overrides: dict) -> OptimConfig:
    try:
        return replace(base, **overrides)
    except (TypeError, ValueError) as exc:  # ValueError: OptimConfig's own checks (e.g. a negative lr)
        raise UserError(f"optimizer overrides {overrides}: {exc}") from None


def build_adamw(params: Iterable[nn.Parameter], cfg: OptimConfig) -> torch.optim.AdamW:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise UserError("an optimizer group has no trainable parameters (check Stage.optimizer_groups)")
    # Biases and norm gains (1-D) get no weight decay, as is standard for transformers/convnets.
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [g for g in ({"params": decay, "weight_decay": cfg.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def lr_factor(step: int, max_steps: int, cfg: OptimConfig) -> float:
    """Multiplier of ``cfg.lr`` for optimizer step ``step`` (0-based)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    lo = cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        span = max(1, max_steps - cfg.warmup_steps)
        t = min(1.0, (step - cfg.warmup_steps) / span)
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * t))
    # wsd: warmup, constant, then linear decay over the last decay_fraction of the run.
    decay_steps = max(1, int(round(cfg.decay_fraction * max_steps)))
    decay_start = max_steps - decay_steps
    if step < decay_start:
        return 1.0
    t = min(1.0, (step - decay_start) / decay_steps)
    return 1.0 - (1.0 - lo) * t


class Schedule:
    """Sets each param group's lr from the step count; stateless apart from the step."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int):
        self.optimizer, self.cfg, self.max_steps = optimizer, cfg, max_steps
        self.step_count = 0
        self.apply()

    def apply(self) -> None:
        lr = self.cfg.lr * lr_factor(self.step_count, self.max_steps, self.cfg)
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    def step(self) -> None:
        self.step_count += 1
        self.apply()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.apply()
