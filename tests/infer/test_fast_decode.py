"""Decode-step speed-ups (``fast_decode``, ``onednn``): fused q/k/v and gate/up products compute what the separate
layers did, share their memory, and the fused decode of a cast model samples what the generic forward samples."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from infer_helpers import tiny_llm
from llmtts.infer.fast_decode import FUSED_ATTR, concat_linears, fuse_projections_
from llmtts.infer.generate import generate
from llmtts.infer.onednn import OneDNNLinear, linear, use_onednn_linears_
from llmtts.infer.quant import INT8_DEQUANT_MIN_ROWS, Int8Linear, cpu_has_fast_bf16
from llmtts.infer.quant_int4 import Int4Linear, packing_block_rows
from llmtts.infer.sampling import SamplingConfig
from llmtts.infer.tts import cast_llm


SIZES = (32, 64, 96)
BLOCK = packing_block_rows()  # int4's packing stacks whole blocks only (32 rows under AVX2, 64 under AVX-512)


def three_linears(bias: bool = True, sizes=SIZES) -> list[nn.Linear]:
    torch.manual_seed(0)
    return [nn.Linear(64, n, bias=bias) for n in sizes]


def storage_of(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


@pytest.mark.parametrize("kind", ["fp32", "onednn", "int8", "int4"])
def test_concat_linears_computes_the_parts_and_shares_their_memory(kind):
    sizes = tuple(BLOCK * k for k in (1, 2, 3)) if kind == "int4" else SIZES
    mods = three_linears(bias=kind != "int4", sizes=sizes)
    if kind == "onednn":
        mods = [use_onednn_linears_(m) for m in mods]
    if kind == "int8":
        mods = [Int8Linear(m) for m in mods]
    if kind == "int4":
        mods = [Int4Linear(m, 32) for m in mods]
    x = torch.randn(5, 64)
    before = [m(x) for m in mods]
    fused = concat_linears(mods)
    assert fused is not None and fused.out_features == sum(sizes)
    whole = fused(x)
    for part, ref, m in zip(whole.split(sizes, -1), before, mods):
        torch.testing.assert_close(part, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)  # the parts still work on their own
    # No second copy: each part's weight now lives inside the fused weight's storage.
    name = {"int8": "weight_int8", "int4": "weight_int4"}.get(kind, "weight")
    assert {storage_of(getattr(m, name)) for m in mods} == {storage_of(getattr(fused, name))}


def test_linears_that_do_not_stack_are_left_alone():
    a, b = nn.Linear(64, 32, bias=True), nn.Linear(64, 16, bias=False)
    assert concat_linears([a, b]) is None
    assert concat_linears([nn.Linear(64, 32), nn.Linear(32, 32)]) is None
    assert concat_linears([nn.Linear(64, 32), Int8Linear(nn.Linear(64, 32))]) is None
    assert concat_linears([nn.Identity(), nn.Identity()]) is None
    # int4 parts that are not whole packing blocks would interleave wrongly: refused.
    assert concat_linears([Int4Linear(m, 32) for m in three_linears(False, (BLOCK, BLOCK // 2, BLOCK))]) is None


def test_int4_packing_block_is_what_stacks_on_this_cpu():
    """The probed block is the smallest row count whose packed parts stack into the packing of the stacked codes
    (another input width and three parts than the probe uses), and half of it does not stack."""
    pack = torch.ops.aten._convert_weight_to_int4pack_for_cpu
    g = torch.Generator().manual_seed(1)
    assert BLOCK is not None

    def stacks(rows: int) -> bool:
        parts = [torch.randint(0, 16, (rows, 128), generator=g, dtype=torch.int32) for _ in range(3)]
        return torch.equal(torch.cat([pack(p, 1) for p in parts]), pack(torch.cat(parts), 1))
    assert stacks(BLOCK) and stacks(2 * BLOCK)
    assert BLOCK == 16 or not stacks(BLOCK // 2)


def test_onednn_linear_matches_f_linear_and_keeps_the_state_dict():
    lin = nn.Linear(48, 24)
    keys = lin.state_dict().keys()
    x = torch.randn(2, 3, 48)
    ref = lin(x)
    use_onednn_linears_(lin)
    assert lin.state_dict().keys() == keys
    torch.testing.assert_close(lin(x), ref, atol=1e-5, rtol=1e-5)
    # Not float32: the plain F.linear path.
    xb, wb = x.bfloat16(), lin.weight.bfloat16()
    assert torch.equal(linear(xb, wb), nn.functional.linear(xb, wb))


def greedy(model, vocab, fast: bool = True):
    prompts = [[vocab.stop, vocab.text_start] + [vocab.text_offset + 10 + (i * 7 + k) % 40 for k in range(3 + 4 * i)]
               + [vocab.speech_start] for i in range(3)]
    return generate(model, prompts, stop_id=vocab.stop, audio_offset=vocab.audio_offset, n_audio=vocab.n_audio,
                    max_new_tokens=[12] * 3, sampling=SamplingConfig(temperature=0), fast=fast,
                    generators=[torch.Generator().manual_seed(i) for i in range(3)])


@pytest.mark.parametrize("dtype", ["fp32", "int8", "int4"])
def test_cast_model_decodes_fused_like_the_generic_forward(dtype):
    model, vocab, _ = tiny_llm()
    keys = model.state_dict().keys()
    low = cast_llm(copy.deepcopy(model), dtype)
    fused = [layer.__dict__[FUSED_ATTR] for layer in low.model.layers]
    assert all(f.gate_up is not None for f in fused)
    # The tiny model's k/v have 16 rows: int4 leaves its q/k/v apart (not whole 32-row packing blocks).
    assert all((f.qkv is None) == (dtype == "int4") for f in fused)
    # The fused products are not extra parameters (fp32: the very same keys; quantised: no fused ones).
    assert low.state_dict().keys() == keys if dtype == "fp32" else not any(FUSED_ATTR in k for k in low.state_dict())
    if dtype == "fp32":
        assert isinstance(low.model.layers[0].mlp.up_proj, OneDNNLinear) or not torch.backends.mkldnn.is_available()
    # Quantised models keep norms in bf16 only where bf16 is native; elsewhere fp32 (emulated bf16 is slower).
    rest = torch.bfloat16 if dtype != "fp32" and cpu_has_fast_bf16() else torch.float32
    assert low.model.norm.weight.dtype == rest
    fast, generic = greedy(low, vocab), greedy(low, vocab, fast=False)  # generic: the separate (view) layers
    for a, b, ha, hb in zip(fast.codes, generic.codes, fast.hidden, generic.hidden):
        assert torch.equal(a, b) and len(a) > 1
        torch.testing.assert_close(ha, hb, atol=2e-2 if dtype != "fp32" else 1e-5, rtol=1e-2)


def test_fusing_twice_or_a_training_model_is_not_needed():
    """``fuse_projections_`` is for inference models only; an uncast model decodes through the separate layers."""
    model, vocab, _ = tiny_llm()
    assert all(FUSED_ATTR not in layer.__dict__ for layer in model.model.layers)
    ref = greedy(model, vocab)
    assert fuse_projections_(model) == len(model.model.layers)
    got = greedy(model, vocab)
    for a, b in zip(ref.codes, got.codes):
        assert torch.equal(a, b)


def test_int8_keeps_a_bf16_copy_only_where_bf16_matmuls_are_native():
    lin = nn.Linear(64, 32)
    q8 = Int8Linear(lin)
    assert (q8.weight_bf16 is not None) == cpu_has_fast_bf16()
    deq = q8.weight_int8.to(torch.bfloat16) * q8.scale[:, None]
    assert torch.equal(q8.weight, deq)
    # Decode rows (the kernel), a few more, and a prefill's worth (fp32 product on the fly without native bf16).
    for rows in (1, 6, INT8_DEQUANT_MIN_ROWS + 5):
        x = torch.randn(rows, 64)
        exact = x @ deq.float().T + lin.bias.detach()  # the int8 weights' own product: only activations round
        torch.testing.assert_close(q8(x), exact, atol=0.05, rtol=0.02)
