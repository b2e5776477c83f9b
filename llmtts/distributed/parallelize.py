"""The ``pctx`` object handed to ``Stage.parallelize`` (torchtitan's ParallelDims -> parallelize_fn).

A stage's ``<stage>/parallelize.py`` decides *which* modules are FSDP units or checkpointed blocks;
``pctx`` applies activation checkpointing and compile per block, and the strategy object
(``llmtts.distributed.strategies``) wraps for ``parallel.strategy``, so model files stay free of
distributed code::

    def parallelize(models, pctx):
        m = models["model"]
        return {"model": pctx.wrap(m, blocks=list(m.layers))}   # AC / compile / FSDP per block
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from llmtts.distributed.strategies.base import Strategy


@dataclass
class ParallelContext:
    strategy: Strategy  # built once from cfg.parallel
    device: torch.device
    rank: int = 0
    world_size: int = 1
    activation_checkpointing: bool = False
    compile: bool = False

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
        """One sharding unit (``fully_shard`` under fsdp2; unchanged for strategies without units)."""
        return self.strategy.shard(module, reshard_after_forward)

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
        return self.strategy.wrap(model, blocks, self.device, find_unused_parameters)
