"""Per-strategy wrapping helpers: the ``pctx`` object handed to ``Stage.parallelize``.

A stage's ``<stage>/parallelize.py`` decides *which* modules are FSDP units or checkpointed blocks;
this module knows *how* for each strategy, so model files stay free of distributed code::

    def parallelize(models, pctx):
        m = models["model"]
        return {"model": pctx.wrap(m, blocks=list(m.layers))}   # AC / compile / FSDP per block

``deepspeed`` returns modules unchanged here: the trainer hands them to ``deepspeed.initialize``
together with their optimizer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn


@dataclass
class ParallelContext:
    strategy: str  # none | ddp | fsdp2 | deepspeed
    device: torch.device
    rank: int = 0
    world_size: int = 1
    activation_checkpointing: bool = False
    compile: bool = False
    # FSDP2 mixed precision: parameters gathered in this dtype (None = keep fp32).
    param_dtype: torch.dtype | None = None

    # --- building blocks -----------------------------------------------------------------------
    def checkpoint_blocks(self, blocks: Iterable[nn.Module]) -> None:
        """Recompute each block's activations in backward (composable, works under FSDP2/DDP)."""
        from torch.distributed._composable import checkpoint

        for b in blocks:
            checkpoint(b)

    def compile_blocks(self, blocks: Iterable[nn.Module]) -> None:
        """Compile each block's ``forward`` in place: parameter names, FSDP2 / checkpoint hooks
        (which run in ``__call__``, outside the compiled region) stay untouched. (``Module.compile()``
        captured nothing with torch 2.13 here, so the forward is replaced explicitly.)"""
        for b in blocks:
            b.forward = torch.compile(b.forward)

    def shard(self, module: nn.Module, reshard_after_forward: bool = True) -> nn.Module:
        """``fully_shard`` one FSDP2 unit (no-op for other strategies)."""
        if self.strategy != "fsdp2":
            return module
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=self.param_dtype, reduce_dtype=torch.float32) if self.param_dtype else None
        kwargs = {"mp_policy": mp} if mp is not None else {}
        return fully_shard(module, reshard_after_forward=reshard_after_forward, **kwargs)

    # --- the generic recipe --------------------------------------------------------------------
    def wrap(self, model: nn.Module, blocks: Iterable[nn.Module] | None = None,
             find_unused_parameters: bool = False) -> nn.Module:
        """Move to device, then per the switches: activation checkpointing and compile on ``blocks``
        (or the whole model), FSDP2 units per block + root, or DDP around the whole model
        (``find_unused_parameters`` for models whose forward skips some parameters on some steps)."""
        model.to(self.device)
        blocks = list(blocks) if blocks is not None else []
        if self.activation_checkpointing and blocks:
            self.checkpoint_blocks(blocks)
        if self.compile:
            if blocks:
                self.compile_blocks(blocks)
            else:
                self.compile_blocks([model])
        if not any(p.requires_grad for p in model.parameters()):
            return model  # frozen helpers (e.g. a teacher) need no gradient sync
        if self.strategy == "fsdp2":
            for b in blocks:
                self.shard(b)
            return self.shard(model)
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            return DDP(model, device_ids=ids, find_unused_parameters=find_unused_parameters)
        return model


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DDP / torch.compile / DeepSpeed wrappers (FSDP2 wraps in place)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif type(model).__name__ in ("DistributedDataParallel", "DeepSpeedEngine") and hasattr(model, "module"):
            model = model.module
        else:
            return model
