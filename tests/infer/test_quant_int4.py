"""Weight-only int4 (``llmtts.infer.quant_int4``): the packed kernel multiplies by the weights it claims to
(a dequantised reference), within the quantisation bound of the original layer, and TTS synthesises with it."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from infer_helpers import tiny_llm
from llmtts.infer.generate import generate
from llmtts.infer.quant_int4 import Int4Linear, dequantize_groups, pick_group, quantize_groups, quantize_int4_
from llmtts.infer.sampling import SamplingConfig


def greedy_run(model, vocab, n_prompts: int, max_new: int = 8):
    prompts = [[vocab.stop, vocab.text_start] + [vocab.text_offset + 10 + (i * 7 + k) % 40 for k in range(3 + 4 * i)]
               + [vocab.speech_start] for i in range(n_prompts)]
    return generate(model, prompts, stop_id=vocab.stop, audio_offset=vocab.audio_offset, n_audio=vocab.n_audio,
                    max_new_tokens=[max_new] * n_prompts, sampling=SamplingConfig(temperature=0),
                    generators=[torch.Generator().manual_seed(i) for i in range(n_prompts)])


@pytest.mark.parametrize("group", [32, 64, 128])
def test_int4_linear_equals_its_dequantised_weights_within_the_bound(group):
    torch.manual_seed(0)
    lin = nn.Linear(256, 40, bias=True)  # 40 rows: not a multiple of 16, the padding path
    q4 = Int4Linear(lin, group)
    w = lin.weight.detach()
    q, scale, zero = quantize_groups(w, group)
    deq = dequantize_groups(q, scale, zero)
    # Per-weight error of round-to-nearest over 16 levels: at most half a step (+ float slack).
    step = scale.repeat_interleave(group, dim=1)
    assert ((deq - w).abs() <= step / 2 + 1e-6).all()
    # The kernel multiplies by exactly those weights (up to their bf16 scale/zero and bf16 activations).
    torch.testing.assert_close(q4.weight.float(), deq, atol=2e-2 * float(w.abs().max()), rtol=0)
    x = torch.randn(5, 256)
    y = q4(x)
    assert y.shape == (5, 40) and y.dtype == torch.float32
    ref = x.bfloat16().float() @ deq.T + lin.bias.detach()
    assert (y - ref).abs().max() <= 2e-2 * ref.abs().max()
    # Against the original fp32 layer: inside sum_k |x_k| * step_k / 2, plus bf16 rounding of x.
    bound = (x.abs() @ (step / 2).T) + 1e-2 * (x.abs() @ w.abs().T)
    exact = lin(x).detach()
    assert ((y - exact).abs() <= bound).all()
    # The quantisation is not a no-op: the bound is tight enough that fp32 weights would be far inside it.
    assert (y - exact).abs().max() > 1e-4
    # rows(): the [stop] + audio slice of a head equals the full product's columns.
    torch.testing.assert_close(q4.rows(3, 33)(x), y[:, 3:33])


def test_group_choice_and_unquantisable_layers_are_kept():
    assert pick_group(512, 64) == 64 and pick_group(96, 64) == 32 and pick_group(2304, 128) == 128
    assert pick_group(48, 64) is None
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(48, 16))
    quantize_int4_(model, 64)
    assert isinstance(model[0], Int4Linear) and type(model[1]) is nn.Linear


def test_int4_llm_generates_close_to_fp32():
    from llmtts.infer.tts import cast_llm

    model, vocab, _ = tiny_llm()
    low = cast_llm(copy.deepcopy(model), "int4")
    assert sum(isinstance(m, Int4Linear) for m in low.modules()) == 2 * 7 + 1  # every projection + lm_head
    ref, got = greedy_run(model, vocab, 2), greedy_run(low, vocab, 2)
    assert got.hidden[0].dtype == torch.float32 and got.hidden[0].shape[1] == ref.hidden[0].shape[1]
    # The first state (same prompt): close to fp32 within int4's precision, but not equal to it.
    rel = ((got.hidden[0][0] - ref.hidden[0][0]).norm() / ref.hidden[0][0].norm()).item()
    assert 1e-4 < rel < 0.15


def test_tts_synthesizes_with_int4(exports):
    from llmtts import TTS

    tts = TTS.load(*exports, dtype="int4")
    assert any(isinstance(m, Int4Linear) for m in tts.llm.modules())
    wav, sr = tts.synthesize("Hello there, this is a test.", seed=0, max_tokens=10, batch_size=1)
    assert len(wav) == tts.last_stats["tokens"] * tts.samples_per_token and np.isfinite(wav).all()
    again, _ = tts.synthesize("Hello there, this is a test.", seed=0, max_tokens=10, batch_size=1)
    np.testing.assert_array_equal(wav, again)  # same seed, same kernels: the same audio
