"""``parallel.strategy: fsdp2``: parameters, gradients and optimizer state sharded (``fully_shard`` per unit).

Parameters stay fp32 (no MixedPrecisionPolicy: it would also cast forward inputs, e.g. waveforms into
torch.stft, which has no bf16 kernel); ``ctx.autocast()`` gives bf16 matmuls anyway.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from llmtts.distributed.strategies.base import Strategy


class FSDP2Strategy(Strategy):
    name = "fsdp2"

    @property
    def shards_params(self) -> bool:
        return True

    def wrap(self, model: nn.Module, blocks: list[nn.Module], device: torch.device,
             find_unused_parameters: bool = False) -> nn.Module:
        for b in blocks:  # one unit per block, then the root holds the rest
            self.shard(b)
        return self.shard(model)

    def shard(self, module: nn.Module, reshard_after_forward: bool = True) -> nn.Module:
        return fully_shard(module, reshard_after_forward=reshard_after_forward)

    def set_grad_sync(self, model: nn.Module, enabled: bool) -> None:
        if isinstance(model, FSDPModule):
            model.set_requires_gradient_sync(enabled)

    def clip_grad_norm(self, params: list[nn.Parameter], max_norm: float) -> float:
        return float(self.full_tensor(torch.nn.utils.clip_grad_norm_(params, max_norm)))

    def full_state_dict(self, model: nn.Module, is_main: bool) -> dict[str, torch.Tensor] | None:
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def full_tensor(self, t: torch.Tensor) -> torch.Tensor:
        return t.full_tensor() if isinstance(t, DTensor) else t
