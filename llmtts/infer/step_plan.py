"""A Qwen3 decode step as plain tensor calls: each layer's weights and products gathered once (``DecodePlan``).

Why: at one token per step on a CPU, a step of soprano-80m int8 spent ~14 ms of which ~6.4 ms were weight
products; the rest was per-call overhead of ~60 small ops per layer (module calls, reshapes, casts, two
RMSNorms and a rotate-half rotary per q and k). The plan calls each product through its kind's ``decode_fn``
(no module call), keeps activations 2-D ``[B, d]``, and turns q/k norm + rotary into one norm and one batched
product over the q and k heads together:

    rotary(x) = x * cos + rotate_half(x) * sin = x @ R,   R = diag(cos) + P diag(sin)

(``P`` the signed half-swap), built once per step and shared by every layer. Same math as
``Qwen3DecoderLayer`` (checked against it in tests/infer/test_step_plan.py); summation order differs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

# A layer's fused projections (``fast_decode.fuse_projections``) live in its __dict__ under this name: not a
# submodule, so not in its state dict. Defined here, where the step reads them (fast_decode imports this module).
FUSED_ATTR = "_llmtts_fused"

Fn = Callable[[torch.Tensor], torch.Tensor]


def product_fn(mod: nn.Module) -> Fn:
    """``mod``'s forward on 2-D inputs as the cheapest callable: the kind's own ``decode_fn`` (Int8Linear,
    Int4Linear, OneDNNLinear), ``F.linear`` for a plain linear, the module itself for anything else (adapters)."""
    if hasattr(mod, "decode_fn"):
        return mod.decode_fn()
    if type(mod) is nn.Linear:
        w, b = mod.weight, mod.bias
        return lambda x: F.linear(x, w, b)
    return mod


def norm_fn(norm: nn.Module) -> Fn:
    """``Qwen3RMSNorm`` in one call (fp32), or normalised in fp32 then cast and scaled (other dtypes), as it does."""
    w, eps = norm.weight, norm.variance_epsilon
    if w.dtype == torch.float32:
        return lambda x: F.rms_norm(x, (x.shape[-1],), w, eps)
    return lambda x: w * F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype)


def heads_norm_fn(q_norm: nn.Module, hq: int, k_norm: nn.Module, hk: int) -> Fn:
    """``q_norm`` on the first ``hq`` heads and ``k_norm`` on the next ``hk`` of ``[B, hq + hk, hd]``, in one
    normalisation and one product by the stacked weights (both norms share Qwen3's single ``rms_norm_eps``)."""
    if q_norm.variance_epsilon != k_norm.variance_epsilon:
        raise ValueError("q_norm and k_norm with different eps (a Qwen3 config has one rms_norm_eps)")
    eps, hd = q_norm.variance_epsilon, q_norm.weight.shape[-1]
    w = torch.cat([q_norm.weight.expand(hq, hd), k_norm.weight.expand(hk, hd)])
    if w.dtype == torch.float32:
        return lambda x: F.rms_norm(x, (hd,), None, eps) * w
    return lambda x: w * F.rms_norm(x.float(), (hd,), None, eps).to(x.dtype)


@dataclass
class LayerPlan:
    in_norm: Fn
    qkv: Fn  # h [B, d] -> [B, (Hq + 2 Hk) * hd]: q, k, v side by side
    qk_norm: Fn  # [B, Hq + Hk, hd] -> q_norm on the q heads, k_norm on the k heads (one call)
    o: Fn
    post_norm: Fn
    gate_up: Fn  # h [B, d] -> [B, 2 * inter]
    down: Fn
    act: Fn
    heads: tuple[int, int, int]  # Hq, Hk, head_dim
    inter: int
    scale: float


def _side_by_side(*fns: Fn) -> Fn:
    return lambda x: torch.cat([f(x) for f in fns], -1)


def plan_layer(layer, hidden_act: str) -> LayerPlan:

    attn, mlp = layer.self_attn, layer.mlp
    fused = layer.__dict__.get(FUSED_ATTR)
    hd = attn.head_dim
    hq, hk = attn.q_proj.out_features // hd, attn.k_proj.out_features // hd
    qkv = product_fn(fused.qkv) if fused is not None and fused.qkv is not None else _side_by_side(
        *map(product_fn, (attn.q_proj, attn.k_proj, attn.v_proj)))
    gate_up = product_fn(fused.gate_up) if fused is not None and fused.gate_up is not None else _side_by_side(
        product_fn(mlp.gate_proj), product_fn(mlp.up_proj))
    act = F.silu if hidden_act == "silu" else mlp.act_fn  # transformers' SiLUActivation is a module call
    return LayerPlan(norm_fn(layer.input_layernorm), qkv, heads_norm_fn(attn.q_norm, hq, attn.k_norm, hk),
                     product_fn(attn.o_proj), norm_fn(layer.post_attention_layernorm), gate_up,
                     product_fn(mlp.down_proj), act, (hq, hk, hd), mlp.gate_proj.out_features, attn.scaling)


def half_swap(hd: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``P`` with ``x @ P == rotate_half(x)`` (``[-x2, x1]`` for halves ``x1, x2``)."""
    h = hd // 2
    p = torch.zeros(hd, hd, dtype=dtype, device=device)
    idx = torch.arange(h, device=device)
    p[idx + h, idx] = -1
    p[idx, idx + h] = 1
    return p


class DecodePlan:
    """Every layer's ``LayerPlan`` plus the embedding, rotary and final norm of a Qwen3 model (``model.model``).
    Build it after ``cast_llm`` (it holds the cast weights); cheap enough to build per generation."""

    def __init__(self, model):
        m = model.model
        self.rotary, self.embed = m.rotary_emb, m.embed_tokens
        self.layers = [plan_layer(layer, model.config.hidden_act) for layer in m.layers]
        self.final_norm = norm_fn(m.norm)
        self._swap = None

    def embed_and_rotation(self, ids: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``ids [B]``, ``positions [B]`` -> embeddings ``[B, d]`` and each row's rotary matrix ``[B, hd, hd]``."""
        x = self.embed(ids)
        cos, sin = self.rotary(x[:, None], positions[:, None])  # [B, 1, hd] each
        cos, sin = cos[:, 0], sin[:, 0]
        if self._swap is None or self._swap.dtype != cos.dtype:
            self._swap = half_swap(cos.shape[-1], cos.dtype, cos.device)
        return x, torch.diag_embed(cos) + self._swap * sin[:, None, :]


def layer_step(p: LayerPlan, x: torch.Tensor, rot: torch.Tensor, store, bias: torch.Tensor | None) -> torch.Tensor:
    """One decoder layer on one new token per row (``x [B, d]``). ``store(k, v)`` (``[B, Hk, hd]`` each) writes
    the new key/value into the caller's cache and returns the ``(keys, values)`` ``[B, Hk, L, hd]`` to attend
    over; ``bias`` is the additive mask ``[B, 1, 1, L]`` (None: nothing masked)."""
    B = x.shape[0]
    hq, hk, hd = p.heads
    qkv = p.qkv(p.in_norm(x))
    qk = qkv[:, : (hq + hk) * hd].view(B, hq + hk, hd)
    # q_norm / k_norm (no weight), the weights per head, then rotary as one product: [B, Hq + Hk, hd].
    qk = torch.bmm(p.qk_norm(qk), rot)
    keys, values = store(qk[:, hq:], qkv[:, (hq + hk) * hd:].view(B, hk, hd))
    o = F.scaled_dot_product_attention(qk[:, :hq, None], keys, values, attn_mask=bias, scale=p.scale,
                                       enable_gqa=True)
    x = x + p.o(o.view(B, hq * hd))
    gu = p.gate_up(p.post_norm(x))
    return x + p.down(p.act(gu[:, : p.inter]) * gu[:, p.inter:])
