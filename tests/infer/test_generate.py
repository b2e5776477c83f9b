"""Generation loop and sampling: cache == no cache, batch == alone, alignment == teacher forcing, stop."""
from __future__ import annotations

import pytest
import torch

from llmtts.errors import UserError
from llmtts.infer.generate import generate
from llmtts.infer.sampling import SamplingConfig, apply_repetition_penalty, filter_logits, sample_next
from llmtts.llm.hidden import audio_hidden_states

from infer_helpers import N_AUDIO, tiny_llm


@pytest.fixture(scope="module")
def llm():
    return tiny_llm()


def prompts_of(vocab, n):
    base = vocab.text_offset
    return [[vocab.stop, vocab.text_start] + [base + 10 + (i * 7 + k) % 40 for k in range(3 + 4 * i)] + [vocab.speech_start]
            for i in range(n)]


def run(model, vocab, prompts, seeds, max_new=12, **kw):
    return generate(model, prompts, stop_id=vocab.stop, audio_offset=vocab.audio_offset, n_audio=vocab.n_audio,
                    max_new_tokens=[max_new] * len(prompts), sampling=kw.pop("sampling", SamplingConfig()),
                    generators=[torch.Generator().manual_seed(s) for s in seeds], **kw)


def test_kv_cache_equals_full_recompute(llm):
    model, vocab, _ = llm
    prompts = prompts_of(vocab, 3)
    a = run(model, vocab, prompts, [1, 2, 3])
    b = run(model, vocab, prompts, [1, 2, 3], use_cache=False)
    for i in range(3):
        assert torch.equal(a.codes[i], b.codes[i])
        torch.testing.assert_close(a.hidden[i], b.hidden[i], atol=1e-5, rtol=1e-5)


def test_batch_equals_one_by_one(llm):
    model, vocab, _ = llm
    prompts = prompts_of(vocab, 3)  # different lengths: left padding is exercised
    batch = run(model, vocab, prompts, [5, 6, 7])
    for i, p in enumerate(prompts):
        alone = run(model, vocab, [p], [5 + i])
        assert torch.equal(batch.codes[i], alone.codes[0])
        torch.testing.assert_close(batch.hidden[i], alone.hidden[0], atol=1e-5, rtol=1e-5)


def test_collected_states_equal_teacher_forced_dump_alignment(llm):
    model, vocab, _ = llm
    p = prompts_of(vocab, 1)[0]
    g = run(model, vocab, [p], [3], max_new=10)
    ids = p + (g.codes[0] + vocab.audio_offset).tolist()
    tf = audio_hidden_states(model, ids, len(p), n_audio=len(g.codes[0]))
    torch.testing.assert_close(g.hidden[0], tf, atol=1e-5, rtol=1e-5)


def test_stop_token_ends_a_row_and_min_tokens_masks_it(llm):
    model, vocab, _ = llm
    p = prompts_of(vocab, 2)
    greedy = SamplingConfig(temperature=0)
    saved = model.lm_head.weight.data.clone()
    # Zero [stop] and audio rows: every logit ties at 0 and argmax picks column 0 = [stop] when allowed.
    model.lm_head.weight.data[vocab.stop: vocab.audio_offset + N_AUDIO] = 0
    try:
        g = run(model, vocab, p, [0, 1], max_new=20, sampling=greedy, min_new_tokens=3)
        assert [len(c) for c in g.codes] == [3, 3] and g.stopped == [True, True]
        assert [h.shape[0] for h in g.hidden] == [3, 3]  # the state [stop] came from is dropped
        g = run(model, vocab, p, [0, 1], max_new=20, sampling=greedy)
        assert [len(c) for c in g.codes] == [0, 0]
    finally:
        model.lm_head.weight.data.copy_(saved)


def test_max_length_without_stop_is_reported(llm):
    model, vocab, _ = llm
    g = run(model, vocab, prompts_of(vocab, 1), [0], max_new=5, min_new_tokens=5)
    assert len(g.codes[0]) == 5 and g.stopped == [False]


def test_seed_controls_sampling(llm):
    model, vocab, _ = llm
    p = prompts_of(vocab, 1)
    assert torch.equal(run(model, vocab, p, [4]).codes[0], run(model, vocab, p, [4]).codes[0])
    assert not torch.equal(run(model, vocab, p, [4]).codes[0], run(model, vocab, p, [5]).codes[0])


def test_top_k_1_and_tiny_top_p_are_greedy():
    logits = torch.randn(4, 50)
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    for cfg in (SamplingConfig(temperature=1.0, top_k=1, top_p=1.0), SamplingConfig(temperature=1.0, top_p=1e-6)):
        assert torch.equal(sample_next(logits, cfg, gens), logits.argmax(-1))


def test_top_k_keeps_only_k_and_samples_follow_probabilities():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = filter_logits(logits, SamplingConfig(temperature=1.0, top_k=2, top_p=1.0))
    assert torch.isinf(kept[0, 2:]).all() and torch.isfinite(kept[0, :2]).all()
    g = [torch.Generator().manual_seed(0)]
    draws = torch.stack([sample_next(logits, SamplingConfig(temperature=1.0, top_p=1.0, top_k=0), g) for _ in range(4000)])
    freq = torch.bincount(draws.flatten(), minlength=4).float() / 4000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.03, rtol=0)


def test_repetition_penalty_lowers_repeated_tokens_only():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1, 4]]), 2.0)  # 4 = padding slot
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0]]


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-1),
                                 dict(repetition_penalty=0.5)])
def test_invalid_sampling_options(bad):
    with pytest.raises(UserError):
        SamplingConfig(**bad).validate()


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_low_precision_llm_stays_close_to_fp32(dtype):
    import copy

    from llmtts.infer.tts import cast_llm

    model, vocab, _ = tiny_llm()
    low = cast_llm(copy.deepcopy(model), dtype)
    p = prompts_of(vocab, 2)
    ref = run(model, vocab, p, [1, 2], max_new=8, sampling=SamplingConfig(temperature=0))
    ids = p[0] + (ref.codes[0] + vocab.audio_offset).tolist()
    tf = audio_hidden_states(model, ids, len(p[0]), n_audio=8)
    got = run(low, vocab, p, [1, 2], max_new=8, sampling=SamplingConfig(temperature=0))
    assert got.hidden[0].dtype == torch.float32 and got.hidden[0].shape == tf.shape
    # Same first state (the prompt is identical), within the format's precision.
    rel = ((got.hidden[0][0] - tf[0]).norm() / tf[0].norm()).item()
    assert rel < 0.05


def test_static_cache_step_equals_generic_cached_forward(llm):
    model, vocab, _ = llm
    prompts = prompts_of(vocab, 3)  # left padding -> the static path's additive mask is exercised
    fast = run(model, vocab, prompts, [1, 2, 3], max_new=16)
    generic = run(model, vocab, prompts, [1, 2, 3], max_new=16, fast=False)
    for a, b, ha, hb in zip(fast.codes, generic.codes, fast.hidden, generic.hidden):
        assert torch.equal(a, b) and len(a) > 1
        torch.testing.assert_close(ha, hb, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scale, top_p, sorts", [(8.0, 0.95, 0), (0.3, 0.95, 0), (0.3, 0.5, 1), (2.5, 0.9, 1),
                                                 (8.0, 0.999999, 1)])
def test_top_p_without_a_full_sort_keeps_the_same_ids(monkeypatch, scale, top_p, sorts):
    """Peaked rows are decided by their best ids, flat rows by their worst; rows decided by neither side (and
    only they) sort the whole row. The kept ids and their logits equal the full sort's."""
    import llmtts.infer.sampling as sampling

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 8001, generator=g) * scale
    want = sampling.top_p_sorted(logits, top_p)
    calls = []
    full = sampling.top_p_sorted
    monkeypatch.setattr(sampling, "top_p_sorted", lambda *a: calls.append(1) or full(*a))
    got = sampling.top_p_filter(logits, top_p)
    assert len(calls) == sorts
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    assert torch.equal(got[torch.isfinite(got)], want[torch.isfinite(want)])
    assert 0 < int(torch.isfinite(got).sum(-1).min()) < 8001
