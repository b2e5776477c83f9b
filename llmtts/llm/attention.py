"""Segment-wise attention for packed rows: causal SDPA inside each utterance, nothing across.

The block-diagonal *mask* path (transformers builds a dense [R, 1, L, L] mask from restarting position
ids) computes attention over the whole row, ~L^2 work per row, and on CPU SDPA then takes its slow
masked path. Here each utterance is attended on its own with ``is_causal=True``: sum(l_i^2) work and the
fast causal kernel. Numerically the same as the mask path (tested).

Registered with transformers under ``SEGMENT_ATTENTION`` (attention function + a mask function that
builds nothing). Used only for training forwards without a KV cache; exports keep ``sdpa``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SEGMENT_ATTENTION = "llmtts_segments"


def segment_bounds(position_ids: torch.Tensor) -> list[list[int]]:
    """Per row, the start index of every segment (position ids restart) plus the row length."""
    pos = position_ids
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[:, 1:] = pos[:, 1:] != pos[:, :-1] + 1
    length = pos.shape[1]
    return [torch.nonzero(row).flatten().tolist() + [length] for row in starts.cpu()]


def segment_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                      position_ids=None, **kwargs):
    """transformers attention-interface signature: q/k/v [B, H, L, D] -> ([B, L, H, D], None)."""
    b, h, length, _ = query.shape
    if key.shape[2] != length:
        raise RuntimeError(f"{SEGMENT_ATTENTION} is for training forwards without a KV cache")
    if key.shape[1] != h:  # grouped-query attention: share each KV head across its query heads
        rep = h // key.shape[1]
        key = key.repeat_interleave(rep, dim=1)
        value = value.repeat_interleave(rep, dim=1)
    if position_ids is None:
        position_ids = torch.arange(length, device=query.device)[None]
    position_ids = position_ids.expand(b, length)
    p = dropout if module.training else 0.0
    rows = []
    for r, bounds in enumerate(segment_bounds(position_ids)):
        parts = [F.scaled_dot_product_attention(query[r:r + 1, :, s:e], key[r:r + 1, :, s:e],
                                                value[r:r + 1, :, s:e], dropout_p=p, is_causal=True, scale=scaling)
                 for s, e in zip(bounds[:-1], bounds[1:])]
        rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=2))
    out = rows[0] if b == 1 else torch.cat(rows, dim=0)
    return out.transpose(1, 2).contiguous(), None


def _no_mask(*args, **kwargs):
    return None


def register() -> str:
    """Make ``SEGMENT_ATTENTION`` known to transformers (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(SEGMENT_ATTENTION, segment_attention)
    AttentionMaskInterface.register(SEGMENT_ATTENTION, _no_mask)
    return SEGMENT_ATTENTION
