"""What a parallel strategy provides: the one interface the training core talks to (docs/CONVENTIONS.md).

The defaults here are plain single-device torch (strategy ``none``); ``ddp``, ``fsdp2`` and ``deepspeed``
override what they do differently. The core never asks which strategy it runs: the trainer, the step
context (``ctx``), the checkpointer and each stage's ``parallelize`` (through ``ParallelContext``) call
these methods on the one object ``build_strategy(cfg.parallel)`` returned.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Protocol

import torch
from torch import nn

from llmtts.distributed import process_group as pg
from llmtts.distributed.strategies.registry import strategy_class
from llmtts.errors import UserError


class Slot(Protocol):
    """What a strategy sees of one optimizer (``llmtts.train.context.OptimizerSlot``)."""

    name: str
    model_names: list[str]
    optimizer: torch.optim.Optimizer
    params: list[nn.Parameter]
    engine: Any  # what make_engine returned (None: the core steps the torch optimizer itself)


@dataclass
class StepOutcome:
    grad_norm: float | None = None  # global over ranks (same on every rank); None when not measured
    stepped: bool = False           # the weights were updated
    skipped: bool = False           # a non-finite gradient norm: update dropped, gradients zeroed


class Strategy:
    name: ClassVar[str] = "none"
    # Checkpoints of one format resume under any strategy of that format (DCP reshards between none, ddp and
    # fsdp2 and across world sizes); the name is shown when a checkpoint of another format is refused.
    checkpoint_format: ClassVar[str] = "DCP"
    # Joins a (one-process) group even without a distributed launch, so its code paths also run on a laptop.
    needs_process_group: ClassVar[bool] = True
    # Ranks train one model together (gradients or shards shared); False: each process would train alone.
    shares_work_across_ranks: ClassVar[bool] = True

    def __init__(self, pcfg: Any):
        self.pcfg = pcfg  # ParallelConfig
        self.dist: pg.DistInfo | None = None

    # --- process group ---------------------------------------------------------------------------
    def start(self) -> pg.DistInfo:
        """Join the process group (the only place it is created); idempotent."""
        if self.dist is None:
            self.dist = pg.init_process_group(self.needs_process_group, self.pcfg.backend, self.pcfg.timeout_min)
        return self.dist

    @property
    def world_size(self) -> int:
        return self.start().world_size

    def check_trainer(self, tcfg: Any) -> None:
        """Refuse trainer settings this strategy cannot honour (one line)."""

    @property
    def shards_params(self) -> bool:
        """True when a rank holds only part of each weight (a forward is then collective)."""
        return False

    # --- wrapping (called through ParallelContext.wrap / shard) ---------------------------------------
    def wrap(self, model: nn.Module, blocks: list[nn.Module], device: torch.device,
             find_unused_parameters: bool = False) -> nn.Module:
        """The model on ``device`` and trainable (``blocks``: its FSDP units, if the strategy has units)."""
        return model

    def shard(self, module: nn.Module, reshard_after_forward: bool = True) -> nn.Module:
        """Make ``module`` one sharding unit (strategies without units return it unchanged)."""
        return module

    def unwrap(self, model: nn.Module) -> nn.Module:
        """The user's module inside the strategy's wrapper (and torch.compile's)."""
        while hasattr(model, "_orig_mod"):  # a torch.compile'd module
            model = model._orig_mod
        return model

    def count_parameters(self, models: Iterable[nn.Module]) -> int:
        """Parameters of the full (unsharded) models."""
        return sum(p.numel() for m in models for p in m.parameters())  # DTensor.numel() is the global size

    # --- gradient synchronisation -----------------------------------------------------------------
    def set_grad_sync(self, model: nn.Module, enabled: bool) -> None:
        """Gradient all-reduce on (the accumulation boundary) or off (the micro-steps before it)."""

    @contextmanager
    def frozen(self, models: list[nn.Module]) -> Iterator[None]:
        """Extra to ``requires_grad=False`` while ``models`` are run frozen (``ctx.frozen``)."""
        yield

    # --- optimizer step ---------------------------------------------------------------------------
    def make_engine(self, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer, grad_accum: int,
                    grad_clip: float) -> Any:
        """Something that drives ``optimizer`` over ``modules`` (None: the core steps it)."""
        return None

    def backward(self, slot: Slot, loss: torch.Tensor, grad_accum: int) -> None:
        (loss / grad_accum).backward()

    def clip_grad_norm(self, params: list[nn.Parameter], max_norm: float) -> float:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))  # DDP grads are already all-reduced

    def clip_and_step(self, slot: Slot, boundary: bool, grad_clip: float) -> StepOutcome:
        """Called on every micro-step; acts at the accumulation ``boundary`` only. A non-finite gradient norm
        (with clipping on) drops the update: it would poison the weights and the Adam moments."""
        if not boundary:
            return StepOutcome()
        norm = None
        if grad_clip > 0:
            norm = self.clip_grad_norm(slot.params, grad_clip)
            if not math.isfinite(norm):
                slot.optimizer.zero_grad(set_to_none=True)
                return StepOutcome(norm, stepped=False, skipped=True)
        slot.optimizer.step()
        slot.optimizer.zero_grad(set_to_none=True)
        return StepOutcome(norm, stepped=True)

    def zero_grad(self, slot: Slot) -> None:
        slot.optimizer.zero_grad(set_to_none=True)

    # --- checkpoints ------------------------------------------------------------------------------
    def checkpoint_meta(self) -> dict:
        """What ``trainer.json`` records about the strategy."""
        return {"strategy": self.name, "zero_stage": None}

    def check_resume(self, meta: dict, ckpt: Path) -> None:
        """Refuse (one line) a checkpoint this strategy cannot load; ``meta`` is its ``trainer.json``."""
        saved = strategy_class(meta["strategy"])
        if saved.checkpoint_format != self.checkpoint_format:
            formats = " and ".join(sorted({saved.checkpoint_format, self.checkpoint_format}, reverse=True))
            raise UserError(f"{ckpt}: saved with strategy '{meta['strategy']}', cannot resume with "
                            f"'{self.name}' ({formats} checkpoints are not interchangeable)")

    def dcp_state(self, container: nn.Module, slots: dict[str, Slot]) -> dict:
        """Models and optimizers as torch.distributed.checkpoint entries (FQNs of the unwrapped models, so a
        checkpoint reshards across strategies of this format and world sizes)."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        state = {"models": get_model_state_dict(container)}
        for name, slot in slots.items():
            state[f"optim.{name}"] = get_optimizer_state_dict(container, slot.optimizer)
        return state

    def load_dcp_state(self, container: nn.Module, slots: dict[str, Slot], state: dict) -> None:
        """Put what ``dcp.load`` read into ``dcp_state``'s entries back into the models and optimizers."""
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        set_model_state_dict(container, state["models"])
        for name, slot in slots.items():
            set_optimizer_state_dict(container, slot.optimizer, state[f"optim.{name}"])

    def save_native(self, ckpt: Path, slots: dict[str, Slot]) -> None:
        """Files in the strategy's own format (written before the DCP entries), e.g. DeepSpeed's."""

    def load_native(self, ckpt: Path, slots: dict[str, Slot]) -> None:
        """Read what ``save_native`` wrote (before the DCP entries are read)."""

    def full_state_dict(self, model: nn.Module, is_main: bool) -> dict[str, torch.Tensor] | None:
        """Full CPU weights of one unwrapped model for the export (collective where sharded; rank 0 uses it)."""
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def full_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """A whole tensor from a (possibly sharded) one, e.g. an EMA weight (collective where sharded)."""
        return t
