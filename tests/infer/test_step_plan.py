"""``step_plan``: the decode step as plain tensor calls computes what ``Qwen3DecoderLayer`` computes."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import DynamicCache
from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb

from infer_helpers import tiny_llm
from llmtts.infer.fast_decode import StaticDecoder
from llmtts.infer.onednn import use_onednn_linears_
from llmtts.infer.quant import Int8Linear
from llmtts.infer.quant_int4 import Int4Linear
from llmtts.infer.step_plan import DecodePlan, half_swap, heads_norm_fn, norm_fn, product_fn
from llmtts.infer.tts import cast_llm


def spread_norms_(model) -> None:
    """Random-init norms are all ones, which would hide a weight applied to the wrong heads."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(0.5 + torch.rand(p.shape, generator=g))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_norm_fns_equal_qwen3s_norms(dtype):
    model, _, _ = tiny_llm()
    spread_norms_(model)
    model.to(dtype)
    norm = model.model.norm
    x = (torch.randn(3, norm.weight.numel()) * 4).to(dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(norm_fn(norm)(x), norm(x), atol=tol, rtol=tol)
    attn = model.model.layers[0].self_attn
    hq, hk = 2, 1
    heads = (torch.randn(3, hq + hk, attn.head_dim) * 3).to(dtype)
    want = torch.cat([attn.q_norm(heads[:, :hq]), attn.k_norm(heads[:, hq:])], 1)
    torch.testing.assert_close(heads_norm_fn(attn.q_norm, hq, attn.k_norm, hk)(heads), want, atol=tol, rtol=tol)


def test_rotary_as_one_product_equals_rotate_half():
    model, _, _ = tiny_llm()
    plan = DecodePlan(model)
    positions = torch.tensor([0, 5, 300])
    x, rot = plan.embed_and_rotation(torch.tensor([3, 4, 5]), positions)
    cos, sin = model.model.rotary_emb(x[:, None], positions[:, None])
    q, k = torch.randn(3, 2, 1, 16), torch.randn(3, 1, 1, 16)
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(torch.bmm(q[:, :, 0], rot), q_ref[:, :, 0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.bmm(k[:, :, 0], rot), k_ref[:, :, 0], atol=1e-6, rtol=1e-6)
    swap = half_swap(4, torch.float32, "cpu")
    assert torch.equal(torch.tensor([[1.0, 2.0, 3.0, 4.0]]) @ swap, torch.tensor([[-3.0, -4.0, 1.0, 2.0]]))


class Scaled(nn.Module):
    """A stand-in adapter: not a linear kind the plan knows, so it must be called as a module."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return 2 * self.inner(x)


@pytest.mark.parametrize("kind", ["linear", "onednn", "int8", "int4", "adapter"])
def test_product_fn_computes_the_modules_forward(kind):
    torch.manual_seed(0)
    mod = nn.Linear(64, 96)
    mod = {"linear": lambda m: m, "onednn": use_onednn_linears_, "int8": Int8Linear,
           "int4": lambda m: Int4Linear(m, 32), "adapter": Scaled}[kind](mod)
    for rows in (1, 3, 64):  # decode rows, a small batch, a prefill-sized block
        x = torch.randn(rows, 64)
        torch.testing.assert_close(product_fn(mod)(x), mod(x), atol=1e-5, rtol=1e-5)


def last_state_generic(model, ids: torch.Tensor) -> torch.Tensor:
    return model.model(input_ids=ids, use_cache=False).last_hidden_state[:, -1]


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8", "int4"])
def test_static_steps_equal_the_generic_forward(dtype):
    """Prefill 7 ids, then 5 planned steps: each step's state equals the generic forward over the whole sequence
    (no cache) at its last position, with non-trivial norm weights (q and k heads scaled differently)."""
    model, _, _ = tiny_llm()
    spread_norms_(model)
    model = cast_llm(copy.deepcopy(model), dtype)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 60, (2, 12), generator=g)
    P = 7
    with torch.inference_mode():
        out = model.model(input_ids=ids[:, :P], use_cache=True, cache=DynamicCache())
        static = StaticDecoder(model, out.cache, None, ids.shape[1] + 1)
        # bf16 / quantised: rounded products (and bf16's rotary rounded once in a product instead of three times)
        tol = 1e-5 if dtype == "fp32" else 5e-2 if dtype == "bf16" else 2e-2
        for t in range(P, ids.shape[1]):
            got = static.step(ids[:, t: t + 1], torch.full((2, 1), t))
            torch.testing.assert_close(got, last_state_generic(model, ids[:, : t + 1]), atol=tol, rtol=tol)
