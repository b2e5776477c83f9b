"""A lean one-token decode step for ``Qwen3ForCausalLM`` with a preallocated (static) KV cache.

Why: a decode step of an 80 M model on a CPU is a few milliseconds of matrix-vector products; the generic
transformers forward adds mask construction, cache bookkeeping and a growing ``torch.cat`` of every layer's
keys/values per step, a large share of the step. This step calls the *same* submodules (projections, RMSNorms,
rotary embedding, MLP) in the same order as ``Qwen3DecoderLayer`` — only the orchestration differs — and
tests check it against the generic forward (cache == no cache, states == teacher-forced dump).

The prompt (prefill) still runs through the generic forward; its cache is copied into the static buffers.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def supports_fast_decode(model) -> bool:
    """Qwen3 with full attention (no sliding window): the layout ``StaticDecoder.step`` reproduces."""
    cfg = getattr(model, "config", None)
    return getattr(cfg, "model_type", "") == "qwen3" and not getattr(cfg, "use_sliding_window", False)


class StaticDecoder:
    def __init__(self, model, cache, attention_mask: torch.Tensor | None, max_len: int):
        """``cache``: the DynamicCache after the prefill; ``attention_mask [B, P]`` (None = no padding)."""
        self.m = model.model
        layer0 = cache.layers[0]
        B, kv, P, hd = layer0.keys.shape
        self.B, self.P = B, P
        self.len = P
        dtype, device = layer0.keys.dtype, layer0.keys.device
        self.k = [torch.empty(B, kv, max_len, hd, dtype=dtype, device=device) for _ in self.m.layers]
        self.v = [torch.empty(B, kv, max_len, hd, dtype=dtype, device=device) for _ in self.m.layers]
        for i, layer in enumerate(cache.layers):
            self.k[i][:, :, :P] = layer.keys
            self.v[i][:, :, :P] = layer.values
        # Additive mask over cache positions: -inf on left padding, 0 elsewhere (None = nothing masked).
        self.bias = None
        if attention_mask is not None and bool((attention_mask == 0).any()):
            self.bias = torch.zeros(B, 1, 1, max_len, dtype=dtype, device=device)
            self.bias[:, 0, 0, :P].masked_fill_(attention_mask == 0, float("-inf"))

    @torch.inference_mode()
    def step(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``ids [B, 1]``, ``positions [B, 1]`` -> post-final-norm states ``[B, 1, d]``."""
        m, L = self.m, self.len
        x = m.embed_tokens(ids)
        cos, sin = m.rotary_emb(x, positions)
        bias = None if self.bias is None else self.bias[..., : L + 1]
        for i, layer in enumerate(m.layers):
            def store(k, v, i=i):  # every row writes at position L and attends over 0..L
                self.k[i][:, :, L], self.v[i][:, :, L] = k, v
                return self.k[i][:, :, : L + 1], self.v[i][:, :, : L + 1]
            x = layer_step(layer, x, cos, sin, store, bias)
        self.len = L + 1
        return m.norm(x)


def layer_step(layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, store, bias: torch.Tensor | None):
    """One ``Qwen3DecoderLayer`` on one new token per row (``x [B, 1, d]``), its submodules called in the same
    order as the layer's own forward. ``store(k, v)`` (``[B, kv_heads, head_dim]`` each) writes the new key/value
    into the caller's cache and returns the ``(keys, values)`` to attend over; ``bias`` is the additive mask.
    Shared by ``StaticDecoder`` and the server's per-row ``SlotBatch``."""
    from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb

    attn, B = layer.self_attn, x.shape[0]
    h = layer.input_layernorm(x)
    shape = (B, 1, -1, attn.head_dim)
    q = attn.q_norm(attn.q_proj(h).view(shape)).transpose(1, 2)
    k = attn.k_norm(attn.k_proj(h).view(shape)).transpose(1, 2)
    v = attn.v_proj(h).view(shape).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    keys, values = store(k[:, :, 0], v[:, :, 0])
    o = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias, scale=attn.scaling, enable_gqa=True)
    x = x + attn.o_proj(o.transpose(1, 2).reshape(B, 1, -1))
    return x + layer.mlp(layer.post_attention_layernorm(x))
