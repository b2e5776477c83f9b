"""fp32 linears through oneDNN for CPU inference.

Why not ``F.linear``: torch's CPU ``F.linear`` calls MKL, whose one-row products (a decode step) did not use the
second core on the AMD EPYC these benchmarks ran on: 17 Soprano-sized layers took 24.8 ms per token through MKL
vs 16.6 ms through oneDNN's inner product (``torch.ops.mkldnn._linear_pointwise``, the op torch.compile's CPU
backend emits), and a 71-row prompt 104 vs 94 ms (docs/inference.md "Speed").
Same math, another summation order (differences ~1e-6 relative). ``LLMTTS_ONEDNN=0`` turns it off.
"""
from __future__ import annotations

import functools
import os

import torch
from torch import nn
from torch.nn import functional as F


@functools.cache
def onednn_linear_available() -> bool:
    """The op exists in this torch build, agrees with ``F.linear`` on a probe, and is not turned off."""
    if os.environ.get("LLMTTS_ONEDNN", "1") == "0" or not torch.backends.mkldnn.is_available():
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(s, generator=g) for s in ((3, 16), (8, 16), (8,)))
        y = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
    except (AttributeError, RuntimeError):
        return False
    return bool(torch.allclose(y, F.linear(x, w, b), atol=1e-5, rtol=1e-5))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, through oneDNN where it applies (CPU, float32 input and weight)."""
    if (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and onednn_linear_available()):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class OneDNNLinear(nn.Linear):
    """An ``nn.Linear`` (same parameters and state dict) whose forward goes through ``linear`` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

    def decode_fn(self):
        """``forward`` as a closure (``step_plan``): the oneDNN op itself for an fp32 CPU weight (whose decode
        inputs are fp32 too), ``forward`` otherwise."""
        w, b, op = self.weight, self.bias, torch.ops.mkldnn._linear_pointwise
        if w.device.type != "cpu" or w.dtype != torch.float32 or not onednn_linear_available():
            return self.forward
        return lambda x: op(x, w, b, "none", [], "")


def use_onednn_linears_(model: nn.Module) -> nn.Module:
    """Turn every plain fp32 CPU ``nn.Linear`` of ``model`` into a ``OneDNNLinear`` in place (the class is swapped,
    the parameters stay: no copy). For inference only (a no-op where oneDNN is unavailable)."""
    if not onednn_linear_available():
        return model
    for m in model.modules():
        if type(m) is nn.Linear and m.weight.device.type == "cpu" and m.weight.dtype == torch.float32:
            m.__class__ = OneDNNLinear
    return model
