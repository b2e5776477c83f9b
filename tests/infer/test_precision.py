"""What streaming and batching promise at each LLM precision (fp32, bf16, int8), over several seeds.

Streaming generates exactly the batches ``synthesize`` generates (same shapes, same kernels), so at every dtype
it samples the same tokens from bit-identical states; only the decoder's windows differ (its rounding at other
shapes). A batch of several texts is another matter below fp32: a bf16 / int8 batched forward rounds
differently from a one-row forward (~1 % of a state), so now and then a draw that falls within that rounding
of a probability boundary picks another token. docs/inference.md states both; docs/testing.md the bounds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from llmtts import TTS

from infer_helpers import BF16_DECODER_REL, BF16_STATE_REL, FP32_DECODER_REL, assert_within, generated

# Three sentences: with batch_size=2 the stream runs a batch of two, then one.
TEXT = "Hello, my name is Soma Siddhartha. I paid $3.50 on May 1st! Did it work? Another short one, with a comma."
TEXTS = [TEXT, "short.", "Another sentence, somewhat longer than the short one, with a comma."]


def record_generation(monkeypatch) -> list:
    """Every ``StepOutput`` that synthesize / stream generate from now on (both go through ``generate_steps``)."""
    import llmtts.infer.generate as gen_mod
    import llmtts.infer.tts as tts_mod

    seen, orig = [], gen_mod.generate_steps

    def recording(*args, **kwargs):
        for out in orig(*args, **kwargs):
            seen.append(out)
            yield out

    monkeypatch.setattr(gen_mod, "generate_steps", recording)
    monkeypatch.setattr(tts_mod, "generate_steps", recording)
    return seen


def per_row(steps) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(codes, states)`` per sentence from the outputs of one or more ``generate_steps`` runs (each run
    starts at step 0), in emission order."""
    codes, states, base, width = {}, {}, 0, 0
    for out in steps:
        if out.step == 0:
            base, width = base + width, len(out.finished)
        for j, i in enumerate(out.emitted):
            codes.setdefault(base + i, []).append(out.codes[j: j + 1])
            states.setdefault(base + i, []).append(out.hidden[j: j + 1])
    return [(torch.cat(codes[i]), torch.cat(states[i])) for i in sorted(codes)]


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8"])
def test_stream_equals_offline_at_every_dtype(exports, dtype, monkeypatch):
    """Same tokens and bit-identical states (same batches, shapes and kernels); the audio differs only by the
    decoder's rounding on the stream's windows."""
    tts = TTS.load(*exports, dtype=dtype)
    # The decoder's own precision decides its rounding: bf16 autocast only where bf16 is native (else fp32, whatever
    # the LLM's dtype: an AVX2 host's int8 / bf16 models decode in fp32 and are held to the fp32 bound).
    rel = BF16_DECODER_REL if tts.decoder_bf16 else FP32_DECODER_REL
    seen = record_generation(monkeypatch)
    for seed in range(4):
        seen.clear()
        offline, _ = tts.synthesize(TEXT, seed=seed, max_tokens=24, batch_size=2)
        offline_rows = seen[:]
        seen.clear()
        chunks = list(tts.stream(TEXT, seed=seed, max_tokens=24, batch_size=2, first_chunk=1, max_chunk=4))
        assert tts.last_stats["sentences"] == 3, seed
        rows, offline_rows = per_row(seen), per_row(offline_rows)
        assert len(rows) == len(offline_rows) == 3, seed
        for (c, h), (oc, oh) in zip(rows, offline_rows):
            assert torch.equal(c, oc) and torch.equal(h, oh), f"{dtype} seed {seed}: other tokens or states"
        assert_within(np.concatenate(chunks), offline, rel * np.abs(offline).max(), f"{dtype} seed {seed}")


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_low_precision_batch_differs_from_one_by_one_only_by_rounding(exports, dtype):
    """Each sentence's states in a batch equal its states alone within bf16 rounding, up to and including the
    state of the first token that differs (from there on the inputs differ). Cross-talk between rows or a
    misaligned pad breaks this at the first step. Tokens differed in 9 of 30 sentences here with int8, 0 with bf16."""
    tts = TTS.load(*exports, dtype=dtype)
    rows = differ = 0
    for seed in range(6):
        b_states, b_codes = generated(tts, TEXTS, seed, max_tokens=16, batch_size=len(TEXTS) + 2)
        k = 0
        for text in TEXTS:
            states, codes = generated(tts, [text], seed, max_tokens=16, batch_size=1)
            for h, c in zip(states, codes):
                bh, bc = b_states[k], b_codes[k]
                n = min(len(c), len(bc))
                mismatch = (c[:n] != bc[:n]).nonzero()
                same = int(mismatch[0]) + 1 if len(mismatch) else n  # states that came from the same inputs
                worst = float(((h[:same] - bh[:same]).abs() / h[:same].abs().amax(1, keepdim=True)).max())
                assert worst <= BF16_STATE_REL, f"{dtype} seed {seed} sentence {k}: states differ by {worst:.3g}"
                rows, differ, k = rows + 1, differ + (len(mismatch) > 0 or len(c) != len(bc)), k + 1
    assert differ <= rows // 2, f"{dtype}: {differ} of {rows} sentences sampled other tokens in a batch"
