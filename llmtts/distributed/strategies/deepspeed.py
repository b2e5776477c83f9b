"""``parallel.strategy: deepspeed``: ZeRO 1/2/3 (``parallel.deepspeed``), one engine per optimizer.

Models are not wrapped (stages call the plain modules); each optimizer's models and the core's torch AdamW
go to ``deepspeed.initialize``, whose engine does backward (scaled by 1/grad_accum), clipping and the step.
Checkpoints are DeepSpeed's own (``ds_<optimizer>/``): same strategy and world size to resume.
Helpers (config, JIT op build): ``llmtts.distributed.deepspeed_engine``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from llmtts.distributed import deepspeed_engine as dse
from llmtts.distributed.strategies.base import Slot, StepOutcome, Strategy
from llmtts.errors import UserError


class DeepSpeedStrategy(Strategy):
    name = "deepspeed"
    checkpoint_format = "DeepSpeed"

    @property
    def zero_stage(self) -> int:
        return self.pcfg.deepspeed.zero_stage

    @property
    def shards_params(self) -> bool:
        return self.zero_stage == 3

    def check_trainer(self, tcfg: Any) -> None:
        if tcfg.ema_decay > 0 and self.zero_stage == 3:
            raise UserError("trainer.ema_decay needs full parameters; not supported with deepspeed.zero_stage=3")

    def count_parameters(self, models: Iterable[nn.Module]) -> int:
        # ZeRO-3 keeps a partitioned parameter's full size in ds_numel.
        return sum(getattr(p, "ds_numel", p.numel()) for m in models for p in m.parameters())

    # --- optimizer step ---------------------------------------------------------------------------
    def make_engine(self, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer, grad_accum: int,
                    grad_clip: float) -> Any:
        module = next(iter(modules.values())) if len(modules) == 1 else nn.ModuleDict(modules)
        # bf16 is torch autocast for every strategy: DeepSpeed's own bf16 mode would hand stages bf16 weights
        # with fp32 inputs; weights, gradients and optimizer state stay fp32.
        ds_cfg = dse.build_config(self.zero_stage, self.pcfg.deepspeed.config_file, grad_accum, grad_clip,
                                  self.world_size, bf16=False)
        engine, _ = dse.initialize(module, optimizer, ds_cfg)
        return engine

    def backward(self, slot: Slot, loss: torch.Tensor, grad_accum: int) -> None:
        slot.engine.backward(loss)  # DeepSpeed scales by 1/grad_accum itself

    def clip_and_step(self, slot: Slot, boundary: bool, grad_clip: float) -> StepOutcome:
        slot.engine.step()  # called every micro-step; DeepSpeed acts at its boundary (clipping included)
        if not boundary:
            return StepOutcome()
        norm = slot.engine.get_global_grad_norm()
        return StepOutcome(None if norm is None else float(norm), stepped=True)

    def zero_grad(self, slot: Slot) -> None:
        pass  # the engine owns its gradients (partitioned under ZeRO-2/3)

    # --- checkpoints ------------------------------------------------------------------------------
    def checkpoint_meta(self) -> dict:
        return {"strategy": self.name, "zero_stage": self.zero_stage}

    def check_resume(self, meta: dict, ckpt: Path) -> None:
        super().check_resume(meta, ckpt)
        # ZeRO-3 partitions the parameters too: its files and those of stages 1/2 do not load into each other.
        if (meta.get("zero_stage") == 3) != (self.zero_stage == 3):
            raise UserError(f"{ckpt}: saved with DeepSpeed ZeRO stage {meta.get('zero_stage')}, cannot resume with "
                            f"ZeRO stage {self.zero_stage}; use the same parallel.deepspeed.zero_stage")
        if meta["world_size"] != self.world_size:
            raise UserError(f"{ckpt}: DeepSpeed checkpoint from {meta['world_size']} ranks cannot resume on "
                            f"{self.world_size}; use the same world size (or fsdp2/ddp, which reshard)")

    def dcp_state(self, container: nn.Module, slots: dict[str, Slot]) -> dict:
        return {}  # models and optimizers are in the engines' own files

    def load_dcp_state(self, container: nn.Module, slots: dict[str, Slot], state: dict) -> None:
        pass

    def save_native(self, ckpt: Path, slots: dict[str, Slot]) -> None:
        for name, slot in slots.items():
            slot.engine.save_checkpoint(str(ckpt / f"ds_{name}"), tag="state", save_latest=False)

    def load_native(self, ckpt: Path, slots: dict[str, Slot]) -> None:
        for name, slot in slots.items():
            path, _ = slot.engine.load_checkpoint(str(ckpt / f"ds_{name}"), tag="state",
                                                  load_optimizer_states=True, load_lr_scheduler_states=False)
            if path is None:
                raise UserError(f"{ckpt}: DeepSpeed could not load ds_{name}")

    def full_state_dict(self, model: nn.Module, is_main: bool) -> dict[str, torch.Tensor] | None:
        return dse.gathered_state_dict(model, self.zero_stage, is_main)
