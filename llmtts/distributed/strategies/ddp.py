"""``parallel.strategy: ddp``: every rank holds the whole model; gradients are all-reduced in backward."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from llmtts.distributed.strategies.base import Strategy


class DDPStrategy(Strategy):
    name = "ddp"

    def wrap(self, model: nn.Module, blocks: list[nn.Module], device: torch.device,
             find_unused_parameters: bool = False) -> nn.Module:
        ids = [device.index] if device.type == "cuda" else None
        return DDP(model, device_ids=ids, find_unused_parameters=find_unused_parameters)

    def unwrap(self, model: nn.Module) -> nn.Module:
        while isinstance(model, DDP) or hasattr(model, "_orig_mod"):
            model = model.module if isinstance(model, DDP) else model._orig_mod
        return model

    def set_grad_sync(self, model: nn.Module, enabled: bool) -> None:
        if isinstance(model, DDP):
            model.require_backward_grad_sync = enabled

    @contextmanager
    def frozen(self, models: list[nn.Module]) -> Iterator[None]:
        # DDP would wait for gradients the frozen parameters never produce.
        ddps = [m for m in models if isinstance(m, DDP)]
        sync = [m.require_backward_grad_sync for m in ddps]
        for m in ddps:
            m.require_backward_grad_sync = False
        try:
            yield
        finally:
            for m, s in zip(ddps, sync):
                m.require_backward_grad_sync = s
