"""A lean one-token decode step for ``Qwen3ForCausalLM`` with a preallocated (static) KV cache.

Why: a decode step of an 80 M model on a CPU is a few milliseconds of matrix-vector products; the generic
transformers forward adds mask construction, cache bookkeeping and a growing ``torch.cat`` of every layer's
keys/values per step, a large share of the step. This step calls the *same* submodules (projections, RMSNorms,
rotary embedding, MLP) in the same order as ``Qwen3DecoderLayer`` — only the orchestration differs — and
tests check it against the generic forward (cache == no cache, states == teacher-forced dump).

The prompt (prefill) still runs through the generic forward; its cache is copied into the static buffers.

Inference models (``fuse_projections_``, called by ``cast_llm``) also get one matrix for q/k/v and one for the
MLP's gate/up: fewer, longer products read the same weights with fewer calls (soprano-80m, AMD EPYC, 2 threads:
with oneDNN linears and one-call RMSNorms, fp32 29 -> 20 ms per token; docs/inference.md "Speed").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

FUSED_ATTR = "_llmtts_fused"  # kept in the layer's __dict__: not a submodule, so not in its state dict


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
        return rms_norm(m.norm, x)


@dataclass
class FusedProjections:
    """A layer's q/k/v as one product and the MLP's gate/up as another (None: that group did not stack), with the
    split sizes of their outputs."""

    qkv: nn.Module | None
    qkv_sizes: tuple[int, int, int]
    gate_up: nn.Module | None
    gate_up_sizes: tuple[int, int]


def concat_linears(mods: list[nn.Module]) -> nn.Module | None:
    """One module whose output is the outputs of ``mods`` side by side; each of ``mods`` is re-pointed at its rows
    of the new weight (views: no memory is added). Plain linears, ``Int8Linear`` and ``Int4Linear``
    (``concat``); None for anything else (e.g. adapters) or modules that do not stack."""
    kind = type(mods[0])
    if any(type(m) is not kind for m in mods):
        return None
    if hasattr(kind, "concat"):
        return kind.concat(mods)
    if not issubclass(kind, nn.Linear) or len({m.in_features for m in mods}) != 1 or len(
            {m.bias is None for m in mods}) != 1:
        return None
    fused = kind(mods[0].in_features, sum(m.out_features for m in mods), bias=mods[0].bias is not None,
                 device="meta")
    for name in ("weight", "bias"):
        if getattr(mods[0], name) is None:
            continue
        whole = torch.cat([getattr(m, name).detach() for m in mods])
        setattr(fused, name, nn.Parameter(whole, requires_grad=False))
        start = 0
        for m in mods:
            part = getattr(m, name)
            part.data = whole[start: start + len(part)]
            start += len(part)
    return fused


def fuse_projections_(model) -> int:
    """Give every layer of a Qwen3 inference model its ``FusedProjections`` (used by ``layer_step``); returns how
    many layers got them. Inference only: the original projections become views into the fused weights, so
    call it after every cast and move (a later ``.to()`` would separate them again)."""
    if not supports_fast_decode(model):
        return 0
    done = 0
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        parts = (attn.q_proj, attn.k_proj, attn.v_proj)
        qkv = concat_linears(list(parts))
        gate_up = concat_linears([mlp.gate_proj, mlp.up_proj])
        if qkv is None and gate_up is None:
            continue
        layer.__dict__[FUSED_ATTR] = FusedProjections(qkv, tuple(p.out_features for p in parts), gate_up,
                                                      (mlp.gate_proj.out_features, mlp.up_proj.out_features))
        done += 1
    return done


def rms_norm(norm, x: torch.Tensor) -> torch.Tensor:
    """``Qwen3RMSNorm`` in one fused call instead of seven (the same math: normalised in fp32, cast back to the
    input's dtype, then scaled by the weight)."""
    if x.dtype == torch.float32 and norm.weight.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), norm.weight, norm.variance_epsilon)
    return norm.weight * F.rms_norm(x.float(), (x.shape[-1],), None, norm.variance_epsilon).to(x.dtype)


def layer_step(layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, store, bias: torch.Tensor | None):
    """One ``Qwen3DecoderLayer`` on one new token per row (``x [B, 1, d]``), its submodules called in the same
    order as the layer's own forward. ``store(k, v)`` (``[B, kv_heads, head_dim]`` each) writes the new key/value
    into the caller's cache and returns the ``(keys, values)`` to attend over; ``bias`` is the additive mask.
    Shared by ``StaticDecoder`` and the server's per-row ``SlotBatch``."""
    from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb

    attn, mlp, B = layer.self_attn, layer.mlp, x.shape[0]
    fused = layer.__dict__.get(FUSED_ATTR)
    h = rms_norm(layer.input_layernorm, x)
    if fused is None or fused.qkv is None:
        q, k, v = attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)
    else:
        q, k, v = fused.qkv(h).split(fused.qkv_sizes, -1)
    shape = (B, 1, -1, attn.head_dim)
    q = rms_norm(attn.q_norm, q.view(shape)).transpose(1, 2)
    k = rms_norm(attn.k_norm, k.view(shape)).transpose(1, 2)
    v = v.view(shape).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    keys, values = store(k[:, :, 0], v[:, :, 0])
    o = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias, scale=attn.scaling, enable_gqa=True)
    x = x + attn.o_proj(o.transpose(1, 2).reshape(B, 1, -1))
    h = rms_norm(layer.post_attention_layernorm, x)
    if fused is None or fused.gate_up is None:
        return x + mlp(h)
    gate, up = fused.gate_up(h).split(fused.gate_up_sizes, -1)
    return x + mlp.down_proj(mlp.act_fn(gate) * up)
