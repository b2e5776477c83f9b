"""``graphed_decode``: the fixed-shape step (what a CUDA graph records) computes what ``StaticDecoder`` does."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import DynamicCache

from infer_helpers import BF16_STATE_REL, tiny_llm
from llmtts.infer.fast_decode import StaticDecoder
from llmtts.infer.generate import _left_pad
from llmtts.infer.graphed_decode import GraphedDecoder, StaticShapeDecoder
from llmtts.infer.tts import cast_llm


def two_decoders(model, kind, device="cpu"):
    """A left-padded batch of two prompts (lengths 5 and 9) prefilled once; ``StaticDecoder`` and ``kind`` each
    continue from a copy of that cache."""
    ids, mask = _left_pad([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18]], pad_id=0)
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                          cache=DynamicCache())
        ref = StaticDecoder(model, out.cache, mask, 24)
        other = kind(model, copy.deepcopy(out.cache), mask, 24)
    return ref, other, positions[:, -1:]


def run_both(ref, other, last_pos, steps=10, device="cpu"):
    g = torch.Generator().manual_seed(0)
    for t in range(steps):
        tok = torch.randint(4, 60, (2, 1), generator=g).to(device)
        pos = last_pos + 1 + t
        yield ref.step(tok, pos), other.step(tok, pos)


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8"])
def test_static_shape_step_equals_the_sliced_step(dtype):
    """Attending over the whole cache under the mask (padding and the future at -inf) gives the states the sliced
    step gives, step after step, for a left-padded batch. The two attentions sum in another order: fp32 states
    agree to ~1e-7; bf16 states (bf16, and int8 where bf16 is native: AVX-512 BF16 / AMX) may then round to the
    neighbouring bf16 value, so they are held to ``BF16_STATE_REL`` of each row's scale (one flip of 2^-6 was seen
    on an AVX-512 host, none under AVX2)."""
    model, _, _ = tiny_llm()
    model = cast_llm(model, dtype)
    ref, static, last_pos = two_decoders(model, StaticShapeDecoder)
    for a, b in run_both(ref, static, last_pos):
        assert a.dtype == b.dtype
        if a.dtype == torch.float32:
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
        else:
            worst = float(((b - a).abs().float() / a.abs().float().amax(1, keepdim=True)).max())
            assert worst <= BF16_STATE_REL, f"{dtype}: states differ by {worst:.3g} of their scale"
    assert int(static.slot) == ref.len == static.len


def test_static_shape_step_refuses_to_run_past_its_cache():
    model, _, _ = tiny_llm()
    _, static, last_pos = two_decoders(model, StaticShapeDecoder)
    tok = torch.full((2, 1), 7)
    for t in range(24 - 9):  # 9 prompt positions + 15 steps fill the 24
        static.step(tok, last_pos + 1 + t)
    with pytest.raises(RuntimeError, match="past the cache"):
        static.step(tok, last_pos + 16)


def test_a_failed_capture_decodes_eagerly_from_the_same_state(monkeypatch):
    """Where recording fails (here: no CUDA at all), the graphed decoder warns, gives the sliced step's states
    from the same cache position, and later generations no longer try."""
    import llmtts.infer.graphed_decode as gd

    model, _, _ = tiny_llm()
    monkeypatch.setattr(gd, "_CAPTURE_FAILED", False)
    ref, graphed, last_pos = two_decoders(model, GraphedDecoder)
    for a, b in run_both(ref, graphed, last_pos, steps=4):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert graphed.graph is False and gd._CAPTURE_FAILED
    assert not gd.cuda_graphs_enabled(torch.device("cuda"))


@pytest.mark.host_may_skip
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (scripts/gpu-smoke.sh runs this)")
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cuda_graph_replays_equal_the_eager_step(dtype):
    model, _, _ = tiny_llm()
    model = cast_llm(model.cuda(), dtype)
    ref, graphed, last_pos = two_decoders(model, GraphedDecoder, device="cuda")
    tol = 1e-5 if dtype == "fp32" else 2e-2
    for a, b in run_both(ref, graphed, last_pos, device="cuda"):
        torch.testing.assert_close(b, a, atol=tol, rtol=tol)
    assert isinstance(graphed.graph, torch.cuda.CUDAGraph)
