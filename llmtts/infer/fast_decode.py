"""A lean one-token decode step for ``Qwen3ForCausalLM`` with a preallocated (static) KV cache.

Why: a decode step of an 80 M model on a CPU is a few milliseconds of matrix-vector products; the generic
transformers forward adds mask construction, cache bookkeeping and a growing ``torch.cat`` of every layer's
keys/values per step, a large share of the step. This step computes what ``Qwen3DecoderLayer`` computes with the
same weights, and tests check it against the generic forward (cache == no cache, states == teacher-forced dump).

The prompt (prefill) still runs through the generic forward; its cache is copied into the static buffers. The
per-layer math of a step is ``step_plan`` (plain tensor calls, rotary as one product).

Inference models (``fuse_projections_``, called by ``cast_llm``) also get one matrix for q/k/v and one for the
MLP's gate/up: fewer, longer products read the same weights with fewer calls (soprano-80m, AMD EPYC, 2 threads:
with oneDNN linears and one-call RMSNorms, fp32 29 -> 20 ms per token; docs/inference.md "Speed").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from llmtts.infer.step_plan import FUSED_ATTR, DecodePlan, layer_step



def supports_fast_decode(model) -> bool:
    """Qwen3 with full attention (no sliding window): the layout ``StaticDecoder.step`` reproduces."""
    cfg = getattr(model, "config", None)
    return getattr(cfg, "model_type", "") == "qwen3" and not getattr(cfg, "use_sliding_window", False)


class StaticDecoder:
    def __init__(self, model, cache, attention_mask: torch.Tensor | None, max_len: int):
        """``cache``: the DynamicCache after the prefill; ``attention_mask [B, P]`` (None = no padding)."""
        self.plan = DecodePlan(model)
        layer0 = cache.layers[0]
        B, kv, P, hd = layer0.keys.shape
        self.B, self.P = B, P
        self.len = P
        dtype, device = layer0.keys.dtype, layer0.keys.device
        self.k = [torch.empty(B, kv, max_len, hd, dtype=dtype, device=device) for _ in cache.layers]
        self.v = [torch.empty(B, kv, max_len, hd, dtype=dtype, device=device) for _ in cache.layers]
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
        """``ids [B, 1]``, ``positions [B, 1]`` -> post-final-norm states ``[B, d]``."""
        L, plan = self.len, self.plan
        x, rot = plan.embed_and_rotation(ids[:, 0], positions[:, 0])
        bias = None if self.bias is None else self.bias[..., : L + 1]
        for i, p in enumerate(plan.layers):
            def store(k, v, i=i):  # every row writes at position L and attends over 0..L
                self.k[i][:, :, L], self.v[i][:, :, L] = k, v
                return self.k[i][:, :, : L + 1], self.v[i][:, :, : L + 1]
            x = layer_step(p, x, rot, store, bias)
        self.len = L + 1
        return plan.final_norm(x)


@dataclass
class FusedProjections:
    """A layer's q/k/v as one product and the MLP's gate/up as another (None: that group did not stack)."""

    qkv: nn.Module | None
    gate_up: nn.Module | None


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
    """Give every layer of a Qwen3 inference model its ``FusedProjections`` (used by ``step_plan``); returns how
    many layers got them. Inference only: the original projections become views into the fused weights, so
    call it after every cast and move (a later ``.to()`` would separate them again)."""
    if not supports_fast_decode(model):
        return 0
    done = 0
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        qkv = concat_linears([attn.q_proj, attn.k_proj, attn.v_proj])
        gate_up = concat_linears([mlp.gate_proj, mlp.up_proj])
        if qkv is None and gate_up is None:
            continue
        layer.__dict__[FUSED_ATTR] = FusedProjections(qkv, gate_up)
        done += 1
    return done
