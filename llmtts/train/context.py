"""``ctx``: what a stage's ``train_step`` / ``eval_step`` uses to talk to the training core."""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from llmtts.train.loggers import RunLogger

log = logging.getLogger(__name__)


@dataclass
class OptimizerSlot:
    """One optimizer with its models, schedule and (strategy deepspeed) engine."""

    name: str
    model_names: list[str]
    optimizer: torch.optim.Optimizer
    schedule: Any
    params: list[nn.Parameter]
    engine: Any = None  # deepspeed.DeepSpeedEngine


@dataclass
class StepContext:
    device: torch.device
    rank: int
    world_size: int
    models: dict[str, nn.Module]          # as wrapped for the strategy; call these in steps
    slots: dict[str, OptimizerSlot]
    logger: RunLogger
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

    def backward(self, loss: torch.Tensor, opt: str = "main") -> None:
        slot = self.slots[opt]
        if slot.engine is not None:
            slot.engine.backward(loss)  # DeepSpeed scales by 1/grad_accum itself
        else:
            (loss / self.grad_accum).backward()

    def step(self, opt: str = "main") -> bool:
        """Clip, step, zero grads and advance the schedule -- at the accumulation boundary only."""
        slot = self.slots[opt]
        if slot.engine is not None:
            slot.engine.step()  # called every micro-step; DeepSpeed acts at its boundary
            if self.is_boundary:
                norm = slot.engine.get_global_grad_norm()
                if norm is not None:
                    self.extra[f"grad_norm/{opt}"] = float(norm)
                slot.schedule.step()
            return self.is_boundary
        if not self.is_boundary:
            return False
        if self.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(slot.params, self.grad_clip)
            if hasattr(norm, "full_tensor"):
                norm = norm.full_tensor()
            norm = float(norm)  # global over ranks (DDP all-reduced, FSDP2 DTensor): same on every rank
            self.extra[f"grad_norm/{opt}"] = norm
            if not math.isfinite(norm):
                # A NaN/inf gradient would poison the weights and the Adam moments: skip this update.
                self.skipped[opt] = self.skipped.get(opt, 0) + 1
                self.extra[f"skipped_steps/{opt}"] = float(self.skipped[opt])
                if self.rank == 0:
                    log.warning("step %d: non-finite gradient norm for optimizer '%s'; update skipped (%d so far)",
                                self.global_step + 1, opt, self.skipped[opt])
                slot.optimizer.zero_grad(set_to_none=True)
                slot.schedule.step()
                return False
        slot.optimizer.step()
        slot.optimizer.zero_grad(set_to_none=True)
        slot.schedule.step()
        return True

    def zero_grad(self, opt: str = "main") -> None:
        """Drop gradients of ``opt``'s models (e.g. left there by another loss' backward)."""
        slot = self.slots[opt]
        if slot.engine is None:
            slot.optimizer.zero_grad(set_to_none=True)

    def lr(self, opt: str = "main") -> float:
        return self.slots[opt].schedule.lr

    @contextmanager
    def frozen(self, opt: str) -> Iterator[None]:
        """Run ``opt``'s models without producing gradients for them (a GAN generator step through
        the discriminator): parameters stop requiring grad, and DDP stops expecting a gradient sync."""
        slot = self.slots[opt]
        flags = [(p, p.requires_grad) for p in slot.params]
        ddps = [m for n in slot.model_names for m in [self.models[n]] if hasattr(m, "require_backward_grad_sync")]
        sync = [m.require_backward_grad_sync for m in ddps]
        for p, _ in flags:
            p.requires_grad_(False)
        for m in ddps:
            m.require_backward_grad_sync = False
        try:
            yield
        finally:
            for p, f in flags:
                p.requires_grad_(f)
            for m, s in zip(ddps, sync):
                m.require_backward_grad_sync = s
