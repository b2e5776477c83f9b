"""Exponential moving average of parameters (kept in fp32, same sharding as the parameters)."""
from __future__ import annotations

import torch
from torch import nn


class EMA:
    def __init__(self, models: dict[str, nn.Module], decay: float):
        self.decay = decay
        self.params: dict[str, dict[str, nn.Parameter]] = {
            name: {n: p for n, p in m.named_parameters() if p.requires_grad} for name, m in models.items()
        }
        self.shadow: dict[str, dict[str, torch.Tensor]] = {
            name: {n: p.detach().clone().float() for n, p in ps.items()} for name, ps in self.params.items()
        }

    @torch.no_grad()
    def update(self) -> None:
        for name, ps in self.params.items():
            sh = self.shadow[name]
            keys = list(ps)
            torch._foreach_lerp_([sh[k] for k in keys], [ps[k].detach().float() for k in keys], 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name, sh in self.shadow.items() for k, v in sh.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, sh in self.shadow.items():
            for k, v in sh.items():
                v.copy_(state[f"{name}.{k}"])

    @torch.no_grad()
    def reset(self) -> None:
        """Restart the average from the current weights."""
        for name, ps in self.params.items():
            for k, p in ps.items():
                self.shadow[name][k].copy_(p.detach().float())
