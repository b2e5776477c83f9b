"""Weight-only int8 for CPU decoding: one-token decode steps are memory-bandwidth bound (every weight is read
once per token), so reading 1 byte per weight instead of 4 is the main lever.

``Int8Linear`` keeps per-output-channel symmetric int8 weights and bf16 scales. Few rows (decode) go through
``torch._weight_int8pack_mm`` (bf16 activations); many rows (prompt prefill, big batches) use a bf16 copy of
the dequantised weights and a regular (AMX / AVX-512 bf16) matmul, which is much faster there. The copy is
never read by decode steps, so it costs memory (2 bytes per weight) but no decode bandwidth. On a CPU without
native bf16 (``cpu_has_fast_bf16``) no copy is kept: the int8 kernel takes up to ``INT8_DEQUANT_MIN_ROWS`` rows,
and a prompt prefill converts each weight to fp32 on the fly for an fp32 oneDNN product (faster there than the
kernel, and no bf16 rounding). Relative error of a layer's output is ~0.5 %.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

# Rows up to which the int8 kernel beats a bf16 matmul on dequantised weights (measured on AVX-512 CPUs).
INT8_KERNEL_MAX_ROWS = 4
# Without native bf16 (AVX2), rows from which converting the weights to fp32 on the fly for an fp32 oneDNN product
# beats the int8 kernel (17 soprano-80m layers, AMD EPYC, 2 threads: 32 rows 64 vs 89 ms, 71 rows (a prompt
# prefill) 151 vs 101-114 ms). Decode steps (1 row per sentence) never get here.
INT8_DEQUANT_MIN_ROWS = 48


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Native bf16 matmuls (AVX-512 BF16 / AMX). Without them (e.g. an AVX2 AMD EPYC) a bf16 matmul is emulated:
    measured at 72 rows x (2304 x 512), bf16 47 ms vs fp32 6 ms vs the int8 kernel 10 ms (one thread), so there
    the int8 kernel takes every row count and the decoder stays fp32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class Int8Linear(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(torch.bfloat16))
        keep_copy = w.device.type != "cpu" or cpu_has_fast_bf16()
        self.register_buffer("weight_bf16", self._dequantised() if keep_copy else None)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def _dequantised(self) -> torch.Tensor:
        return self.weight_int8.to(torch.bfloat16) * self.scale[:, None]

    @classmethod
    def concat(cls, mods: list["Int8Linear"]) -> "Int8Linear | None":
        """One layer computing the outputs of all ``mods`` (their rows stacked, e.g. q, k and v); each of ``mods``
        is re-pointed at its rows of the new buffers, so nothing is stored twice. None when they do not stack
        (another input size, bias on some only)."""
        names = ("weight_int8", "scale", "bias", "weight_bf16")
        if len({m.in_features for m in mods}) != 1 or any(
                len({getattr(m, n) is None for m in mods}) != 1 for n in names):
            return None
        fused = cls.__new__(cls)
        nn.Module.__init__(fused)
        for name in names:
            parts = [getattr(m, name) for m in mods]
            whole = None if parts[0] is None else torch.cat(parts)
            fused.register_buffer(name, whole)
            start = 0
            for m, part in zip(mods, parts):
                if part is not None:
                    setattr(m, name, whole[start: start + len(part)])
                    start += len(part)
        fused.in_features, fused.out_features = mods[0].in_features, sum(m.out_features for m in mods)
        return fused

    def rows(self, start: int, stop: int) -> "Int8Linear":
        """A layer computing only output rows ``start:stop`` (e.g. the [stop] + audio part of ``lm_head``)."""
        sub = Int8Linear.__new__(Int8Linear)
        nn.Module.__init__(sub)
        sub.register_buffer("weight_int8", self.weight_int8[start:stop].contiguous())
        sub.register_buffer("scale", self.scale[start:stop].contiguous())
        sub.register_buffer("bias", None if self.bias is None else self.bias[start:stop].contiguous())
        sub.register_buffer("weight_bf16", None if self.weight_bf16 is None else self.weight_bf16[start:stop].contiguous())
        sub.in_features, sub.out_features = self.in_features, stop - start
        return sub

    @property
    def weight(self) -> torch.Tensor:
        """Dequantised bf16 weight (for code that reads ``.weight``; computed when no copy is kept)."""
        return self._dequantised() if self.weight_bf16 is None else self.weight_bf16

    def decode_fn(self):
        """``forward`` for 2-D inputs as a closure (``step_plan``): on a CPU without native bf16, few rows go
        straight to the int8 kernel between two casts, with no module call or reshape; anything else is ``forward``."""
        w, s, b = self.weight_int8, self.scale, self.bias
        if w.device.type != "cpu" or cpu_has_fast_bf16():
            return self.forward
        kernel, forward = torch._weight_int8pack_mm, self.forward

        def f(x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] >= INT8_DEQUANT_MIN_ROWS:
                return forward(x)
            y = kernel(x.to(torch.bfloat16), w, s)
            return (y if b is None else y + b).to(x.dtype)
        return f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1])
        cpu, native_bf16 = rows.device.type == "cpu", cpu_has_fast_bf16()
        if cpu and not native_bf16 and rows.shape[0] >= INT8_DEQUANT_MIN_ROWS:
            from llmtts.infer.onednn import linear

            # Exact int8 weights in fp32, the per-row scale applied to the product (fp32 activations: no rounding).
            y = linear(rows.float(), self.weight_int8.float()) * self.scale.float()
        elif cpu and (rows.shape[0] <= INT8_KERNEL_MAX_ROWS or not native_bf16):
            y = torch._weight_int8pack_mm(rows.to(torch.bfloat16), self.weight_int8, self.scale)
        else:
            y = nn.functional.linear(rows.to(torch.bfloat16), self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)


def quantize_int8_(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` in place by ``Int8Linear`` (embeddings and norms are kept)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, Int8Linear(child))
        else:
            quantize_int8_(child)
    return model
