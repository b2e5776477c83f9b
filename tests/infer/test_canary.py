"""The kernel canary (``canary.py``): correct reduced-precision kernels pass it, a wrong packing and a format too
coarse for the model are refused with one line, and its fp32 emulation of each format is the format itself."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import llmtts.infer.quant_int4 as quant_int4
from infer_helpers import tiny_llm
from llmtts import TTS
from llmtts.errors import UserError
from llmtts.infer.canary import (CANARY_TEXT, FORMAT_MIN_AGREEMENT, KERNEL_REL_BOUND, check_cast,
                                 cpu_kernel_family, format_weights_, run_canary)
from llmtts.infer.quant import Int8Linear
from llmtts.infer.quant_int4 import Int4Linear, packing_block_rows
from llmtts.infer.tts import cast_llm
from llmtts.llm.hidden import prompt_ids
from llmtts.llm.model import LLMModelConfig, build_model


def canary_prompt(vocab, frontend) -> list[int]:
    return prompt_ids(vocab, frontend, frontend.normalize(CANARY_TEXT), speaker=None, normalized=True)


@pytest.mark.parametrize("dtype", ["bf16", "int8", "int4"])
def test_load_runs_the_canary_and_correct_kernels_pass_it(exports, dtype):
    """Every reduced-precision load measures its kernels against the format's emulation; correct ones sit far
    inside the bound (measured <= 0.07 on trained and random models, AVX2 and AVX-512: docs/inference.md)."""
    tts = TTS.load(*exports, dtype=dtype)
    r = tts.canary
    assert r is not None and r.dtype == dtype and r.steps > 0
    assert r.kernel_rel <= KERNEL_REL_BOUND / 2, r
    assert r.agreement >= FORMAT_MIN_AGREEMENT, r
    assert TTS.load(*exports).canary is None  # fp32 is the reference itself


def test_canary_can_be_turned_off(exports, monkeypatch):
    monkeypatch.setenv("LLMTTS_CANARY", "0")
    assert TTS.load(*exports, dtype="int8").canary is None


def half_block_model():
    """A Qwen3 whose k and v projections are half an int4 packing block each (q a whole one): fused, they stack
    correctly only when the packing's real block is respected."""
    block = packing_block_rows()
    _, vocab, frontend = tiny_llm()
    cfg = LLMModelConfig(hidden_size=64, intermediate_size=3 * block // 2, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=block // 2, max_position_embeddings=512)
    torch.manual_seed(0)
    model = build_model(cfg, vocab.size).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    return model, vocab, frontend


def test_a_wrong_int4_packing_is_refused_naming_the_dtype_and_cpu(monkeypatch):
    """The AVX-512 bug, reproduced on any CPU: fusing packed int4 parts of half the real block interleaves their
    rows wrongly. The canary refuses it with one line; the real block passes on the same model."""
    model, vocab, frontend = half_block_model()
    prompt = canary_prompt(vocab, frontend)
    good = run_canary(model, cast_llm(copy.deepcopy(model), "int4"), "int4", prompt, vocab)
    assert good.kernel_rel <= KERNEL_REL_BOUND / 2, good
    monkeypatch.setattr(quant_int4, "packing_block_rows", lambda: packing_block_rows() // 2)
    broken = cast_llm(copy.deepcopy(model), "int4")
    with pytest.raises(UserError) as e:
        check_cast(model, broken, "int4", prompt, vocab)
    msg = str(e.value)
    assert "\n" not in msg and "int4" in msg and cpu_kernel_family() in msg and "broken" in msg


def test_a_format_too_coarse_for_the_model_is_refused():
    """An output head whose every row holds one large weight in the same column (in fp32 it shifts every logit
    alike, so the other weights still choose): int4 stretches each row's 16 levels over it, the other weights all
    round to the row's minimum, and the format's own weights (no kernel involved) stop picking fp32's tokens."""
    model, vocab, frontend = tiny_llm()
    with torch.no_grad():
        model.lm_head.weight[:, 0] = 100 * model.lm_head.weight.abs().max()
    prompt = canary_prompt(vocab, frontend)
    with pytest.raises(UserError, match="int4 is too lossy for this model") as e:
        check_cast(model, cast_llm(copy.deepcopy(model), "int4"), "int4", prompt, vocab)
    assert "\n" not in str(e.value)
    assert check_cast(model, cast_llm(copy.deepcopy(model), "bf16"), "bf16", prompt, vocab).agreement >= 0.9


def test_format_emulation_is_the_formats_own_weights():
    """``format_weights_`` gives exactly what the layers multiply by: int8 codes x bf16 scale, int4 groups (as the
    kernel dequantises them: an identity product, rounded to bf16), bf16 weights."""
    torch.manual_seed(0)
    lin = nn.Linear(128, 64)
    for dtype, layer in (("int8", Int8Linear(lin)), ("int4", Int4Linear(lin, 64))):
        emulated = format_weights_(copy.deepcopy(nn.Sequential(lin)), dtype)[0].weight
        if dtype == "int8":
            assert torch.equal(emulated, layer.weight_int8.float() * layer.scale.float()[:, None])
        else:  # the kernel's identity product is rounded to bf16: half a bf16 step of each weight
            got = layer.weight.float()
            assert torch.all((got - emulated).abs() <= emulated.abs() * 2.0 ** -8 + 1e-6)
    bf = format_weights_(copy.deepcopy(nn.Sequential(lin)), "bf16")[0]
    assert torch.equal(bf.weight, lin.weight.bfloat16().float()) and torch.equal(bf.bias, lin.bias.bfloat16().float())
