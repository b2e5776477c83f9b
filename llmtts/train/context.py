"""``ctx``: what a stage's ``train_step`` / ``eval_step`` uses to talk to the training core."""
from __future__ import annotations

import logging
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from llmtts.distributed.strategies import Strategy
from llmtts.train.loggers import RunLogger

log = logging.getLogger(__name__)


@dataclass
class OptimizerSlot:
    """One optimizer with its models, schedule and whatever the strategy drives it with (``engine``)."""

    name: str
    model_names: list[str]
    optimizer: torch.optim.Optimizer
    schedule: Any
    params: list[nn.Parameter]
    engine: Any = None  # Strategy.make_engine's result (a DeepSpeedEngine), None: the core steps ``optimizer``


@dataclass
class StepContext:
    device: torch.device
    rank: int
    world_size: int
    models: dict[str, nn.Module]          # as wrapped for the strategy; call these in steps
    slots: dict[str, OptimizerSlot]
    logger: RunLogger
    strategy: Strategy                    # parallel.strategy (llmtts.distributed.strategies)
    grad_accum: int = 1
    grad_clip: float = 0.0
    amp_dtype: torch.dtype | None = None  # bf16 autocast, or None for fp32
    global_step: int = 0                  # optimizer steps done so far
    micro: int = 0                        # micro-batch index inside the accumulation cycle
    extra: dict[str, float] = field(default_factory=dict)  # grad norms, filled by step()
    skipped: dict[str, int] = field(default_factory=dict)  # updates skipped for non-finite gradients

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_boundary(self) -> bool:
        return self.micro == self.grad_accum - 1

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def unwrap(self, name: str) -> nn.Module:
        """The stage's own module behind ``models[name]`` (outside the strategy's wrapper)."""
        return self.strategy.unwrap(self.models[name])

    def backward(self, loss: torch.Tensor, opt: str = "main") -> None:
        """``loss`` scaled by 1/grad_accum, backward through the strategy (DeepSpeed: the engine's)."""
        self.strategy.backward(self.slots[opt], loss, self.grad_accum)

    def step(self, opt: str = "main") -> bool:
        """Clip, step, zero grads and advance the schedule -- at the accumulation boundary only."""
        slot = self.slots[opt]
        out = self.strategy.clip_and_step(slot, self.is_boundary, self.grad_clip)
        if not self.is_boundary:
            return False
        if out.grad_norm is not None:
            self.extra[f"grad_norm/{opt}"] = out.grad_norm
        if out.skipped:
            self.skipped[opt] = self.skipped.get(opt, 0) + 1
            self.extra[f"skipped_steps/{opt}"] = float(self.skipped[opt])
            if self.rank == 0:
                log.warning("step %d: non-finite gradient norm for optimizer '%s'; update skipped (%d so far)",
                            self.global_step + 1, opt, self.skipped[opt])
        slot.schedule.step()
        return out.stepped

    def zero_grad(self, opt: str = "main") -> None:
        """Drop gradients of ``opt``'s models (e.g. left there by another loss' backward)."""
        self.strategy.zero_grad(self.slots[opt])

    def lr(self, opt: str = "main") -> float:
        return self.slots[opt].schedule.lr

    @contextmanager
    def frozen(self, opt: str) -> Iterator[None]:
        """Run ``opt``'s models without producing gradients for them (a GAN generator step through
        the discriminator): parameters stop requiring grad, and the strategy stops expecting their gradients
        (DDP's sync)."""
        slot = self.slots[opt]
        flags = [(p, p.requires_grad) for p in slot.params]
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            with self.strategy.frozen([self.models[n] for n in slot.model_names]):
                yield
        finally:
            for p, f in flags:
                p.requires_grad_(f)
