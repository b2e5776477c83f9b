"""Weight-only int4 for CPU decoding: half the bytes of int8, an eighth of fp32 (decode is bandwidth bound).

``Int4Linear`` quantises each group of ``group_size`` input weights of an output row asymmetrically to 16
levels (min/max per group, bf16 scale and zero point) and multiplies through torch's CPU kernel
``_weight_int4pack_mm_for_cpu`` (bf16 activations). The kernel's dequantisation is
``w = (q - 8) * scale + zero`` with ``zero = min + 8 * scale``, so ``|w - dequantised| <= scale / 2`` plus the
bf16 rounding of scale and zero.

Every row count goes through the packed kernel: on an AVX2 CPU without native bf16 (the AMD EPYC these
benchmarks ran on) a bf16 matmul on a dequantised copy was 4x *slower* than the int4 kernel at 64 rows (the
prompt prefill), so unlike ``Int8Linear`` no bf16 copy is kept and the weights cost 0.5 byte + 4 bytes per group.
CPU only: the CUDA kernel wants another packing.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

DEFAULT_GROUP_SIZE = 64  # 32 / 64 / 128 decoded equally fast here; smaller groups are more accurate
_N_MULTIPLE = 16  # the packing wants the output rows in multiples of 16 (padded with zero rows)


@functools.cache
def packing_block_rows() -> int | None:
    """The number of output rows the CPU packing interleaves as one block, probed on this process's kernels: packed
    parts of whole blocks can be stacked into one packed matrix, parts of fewer rows cannot. The block depends on
    the ISA torch dispatches to (32 rows under AVX2, 64 under AVX-512, measured), so it is probed, never assumed.
    None: no size up to 256 stacks (fused int4 products are then never built)."""
    g = torch.Generator().manual_seed(0)
    pack = torch.ops.aten._convert_weight_to_int4pack_for_cpu
    for rows in (16, 32, 64, 128, 256):
        a, b = (torch.randint(0, 16, (rows, 64), generator=g, dtype=torch.int32) for _ in range(2))
        if torch.equal(torch.cat([pack(a, 1), pack(b, 1)]), pack(torch.cat([a, b]), 1)):
            return rows
    return None


def quantize_groups(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``w [N, K]`` -> ``(q int32 [N, K] in 0..15, scale [N, K/g], zero [N, K/g])`` (float32), with
    ``w ~= (q - 8) * scale + zero`` per group."""
    n, k = w.shape
    g = w.float().reshape(n, k // group_size, group_size)
    lo, hi = g.amin(-1), g.amax(-1)
    scale = ((hi - lo) / 15).clamp(min=1e-8)
    q = torch.round((g - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32).reshape(n, k)
    return q, scale, lo + 8 * scale


def dequantize_groups(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """The weights the kernel multiplies by (float32 ``[N, K]``)."""
    n, k = q.shape
    g = (q.float() - 8).reshape(n, scale.shape[1], -1)
    return (g * scale[..., None] + zero[..., None]).reshape(n, k)


def pick_group(in_features: int, group_size: int) -> int | None:
    """The largest group the kernel supports (32..256) that is <= ``group_size`` and divides ``in_features``
    (None: the layer stays unquantised)."""
    return next((g for g in (256, 128, 64, 32) if g <= group_size and in_features % g == 0), None)


class Int4Linear(nn.Module):
    def __init__(self, linear: nn.Linear, group_size: int = DEFAULT_GROUP_SIZE):
        super().__init__()
        w = linear.weight.detach().float().cpu()
        n, k = w.shape
        pad = -n % _N_MULTIPLE
        if pad:
            w = torch.cat([w, w.new_zeros(pad, k)])
        q, scale, zero = quantize_groups(w, group_size)
        self.register_buffer("weight_int4", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        # The kernel's layout: [K / group, N, 2] (scale, zero), bf16.
        sz = torch.stack([scale, zero], -1).transpose(0, 1).contiguous().to(torch.bfloat16)
        self.register_buffer("scales_and_zeros", sz)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(torch.bfloat16))
        self.group_size, self.in_features, self.out_features = group_size, k, n

    @property
    def weight(self) -> torch.Tensor:
        """Dequantised bf16 weight ``[out, in]`` (computed on demand; decode never reads it)."""
        eye = torch.eye(self.in_features, dtype=torch.bfloat16)
        return self._matmul(eye).T.contiguous()

    def _matmul(self, x2: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.weight_int4, self.group_size, self.scales_and_zeros)
        return y[:, : self.out_features]

    @classmethod
    def concat(cls, mods: list["Int4Linear"]) -> "Int4Linear | None":
        """One layer computing the outputs of all ``mods`` (rows stacked, e.g. q, k and v): the CPU packing works
        in blocks of output rows (``packing_block_rows``: 32 or 64 by ISA), so packed parts of whole blocks stack;
        each of ``mods`` is re-pointed at its rows of the new packed weight (the per-group scales, ~3 % of the
        bytes, are copied). None when they do not stack (a part not a whole number of blocks, another group or
        input size, bias on some only)."""
        block = packing_block_rows()
        if (block is None or len({(m.in_features, m.group_size) for m in mods}) != 1
                or len({m.bias is None for m in mods}) != 1
                or any(m.out_features % block or m.weight_int4.shape[0] != m.out_features for m in mods)):
            return None
        fused = cls.__new__(cls)
        nn.Module.__init__(fused)
        fused.register_buffer("weight_int4", torch.cat([m.weight_int4 for m in mods]))
        fused.register_buffer("scales_and_zeros", torch.cat([m.scales_and_zeros for m in mods], dim=1))
        fused.register_buffer("bias", None if mods[0].bias is None else torch.cat([m.bias for m in mods]))
        start = 0
        for m in mods:
            m.weight_int4 = fused.weight_int4[start: start + m.out_features]
            start += m.out_features
        fused.group_size, fused.in_features = mods[0].group_size, mods[0].in_features
        fused.out_features = sum(m.out_features for m in mods)
        return fused

    def rows(self, start: int, stop: int) -> nn.Module:
        """Output rows ``start:stop`` only (the [stop] + audio part of ``lm_head``): the full product, sliced
        (the other rows are ~2 % of Soprano's head; repacking a slice would need the unpacked codes)."""
        return _Rows(self, start, stop)

    def decode_fn(self):
        """``forward`` for 2-D CPU inputs as a closure (``step_plan``): the kernel between two casts."""
        w, g, sz, b, n = self.weight_int4, self.group_size, self.scales_and_zeros, self.bias, self.out_features
        kernel = torch.ops.aten._weight_int4pack_mm_for_cpu

        def f(x: torch.Tensor) -> torch.Tensor:
            y = kernel(x.to(torch.bfloat16).contiguous(), w, g, sz)[:, :n]
            return (y if b is None else y + b).to(x.dtype)
        return f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise RuntimeError("Int4Linear runs on the CPU only")
        shape = x.shape
        y = self._matmul(x.reshape(-1, shape[-1]).to(torch.bfloat16).contiguous())
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)


class _Rows(nn.Module):
    def __init__(self, parent: Int4Linear, start: int, stop: int):
        super().__init__()
        self.parent = [parent]  # a list: not registered as a submodule twice
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parent[0](x)[..., self.start: self.stop]


def quantize_int4_(model: nn.Module, group_size: int = DEFAULT_GROUP_SIZE) -> nn.Module:
    """Replace every ``nn.Linear`` by ``Int4Linear`` in place, with groups of ``group_size`` (smaller where the
    input size needs it: ``pick_group``); embeddings, norms and a linear with no usable group are kept."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            g = pick_group(child.in_features, group_size)
            if g is not None:
                setattr(model, name, Int4Linear(child, g))
        else:
            quantize_int4_(child, group_size)
    return model
