"""Packing keeps utterances independent; targets are shifted within each utterance."""
import numpy as np
import pytest
import torch

from llmtts.errors import UserError
from llmtts.llm.hidden import training_ids
from llmtts.llm.loss import lm_loss, token_losses
from llmtts.llm.packing import AUDIO, IGNORE, TEXT, Segment, assign_rows, pack, pad, segment_targets


def make_segments(vocab, frontend, n=5, seed=0):
    rng = np.random.default_rng(seed)
    words = ["hi", "hello there", "a", "the quick brown fox", "ok then"]
    segs = []
    for i in range(n):
        ids, n_prompt = training_ids(vocab, frontend, words[i % len(words)],
                                     rng.integers(0, vocab.n_audio, int(rng.integers(3, 20))))
        segs.append(Segment(ids, n_prompt))
    return segs


def test_label_alignment(vocab, frontend):
    ids, n_prompt = training_ids(vocab, frontend, "ab", np.array([5, 6, 7]))
    targets, kinds = segment_targets(Segment(ids, n_prompt))
    # ids: [stop][text_start] a b [speech_start] a1 a2 a3 [stop]
    assert n_prompt == 5 and len(ids) == 9
    assert targets[:-1].tolist() == ids[1:].tolist() and targets[-1] == IGNORE
    # Position 4 (speech_start) predicts a1; position 7 (a3) predicts the final stop.
    assert targets[4] == vocab.audio_offset + 5 and kinds[4] == AUDIO
    assert targets[7] == vocab.stop and kinds[7] == AUDIO
    # Prompt positions 0..3 predict text_start, a, b, speech_start: the text loss.
    assert kinds[:4].tolist() == [TEXT] * 4 and targets[3] == vocab.speech_start
    assert kinds[-1] == 0  # the final stop predicts nothing
    assert (kinds == AUDIO).sum() == 3 + 1  # N audio tokens + stop


def test_assign_rows_first_fit():
    rows = assign_rows([5, 3, 4, 2, 6], row_length=8)
    assert sorted(i for r in rows for i in r) == [0, 1, 2, 3, 4]
    assert all(sum([5, 3, 4, 2, 6][i] for i in r) <= 8 for r in rows)
    assert len(rows) == 3
    with pytest.raises(UserError, match="does not fit"):
        assign_rows([9], row_length=8)


def test_packed_rows_layout(vocab, frontend):
    segs = make_segments(vocab, frontend)
    b = pack(segs, row_length=64)
    assert b.input_ids.shape[1] == 64 and b.n_real == sum(len(s) for s in segs)
    for i, s in enumerate(segs):
        m = b.segment == i
        assert b.input_ids[m].tolist() == s.ids.tolist()
        assert b.position_ids[m].tolist() == list(range(len(s)))
    # No target crosses an utterance boundary: the last token of each utterance has none.
    ends = (b.segment[:, :-1] != b.segment[:, 1:]) & (b.segment[:, :-1] >= 0)
    assert (b.targets[:, :-1][ends] == IGNORE).all()


@pytest.mark.parametrize("attention", ["mask", "segments"])
@torch.no_grad()
def test_packed_equals_unpacked_per_utterance_loss(tiny_model, vocab, frontend, attention):
    segs = make_segments(vocab, frontend, n=6)
    if attention == "segments":
        from llmtts.llm.attention import register

        tiny_model.set_attn_implementation(register())
    b = pack(segs, row_length=96)
    assert b.input_ids.shape[0] < len(segs)  # several utterances share a row
    packed_ce = token_losses(tiny_model(b.input_ids, position_ids=b.position_ids).logits, b.targets)
    tiny_model.set_attn_implementation("sdpa")  # the reference: each utterance alone, plain causal sdpa
    for i, s in enumerate(segs):
        alone = pad([s], multiple=1)
        ce_alone = token_losses(tiny_model(alone.input_ids).logits, alone.targets)[0]
        torch.testing.assert_close(packed_ce[b.segment == i], ce_alone, atol=1e-5, rtol=1e-4)
    # Padded batches give the same per-utterance losses too (pads are after the real tokens).
    p = pad(segs)
    padded_ce = token_losses(tiny_model(p.input_ids, position_ids=p.position_ids).logits, p.targets)
    for i in range(len(segs)):
        torch.testing.assert_close(padded_ce[p.segment == i], packed_ce[b.segment == i], atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_packing_needs_no_cache(tiny_model, vocab, frontend):
    """The trap this module guards against: with use_cache=True transformers ignores the packed
    position ids and lets the second utterance attend to the first."""
    segs = make_segments(vocab, frontend, n=2)
    b = pack(segs, row_length=len(segs[0]) + len(segs[1]))
    assert b.input_ids.shape[0] == 1
    good = tiny_model(b.input_ids, position_ids=b.position_ids).logits
    leaky = tiny_model(b.input_ids, position_ids=b.position_ids, use_cache=True).logits
    second = b.segment[0] == 1
    assert (good[0][second] - leaky[0][second]).abs().max() > 1e-3


def test_lm_loss_weights_and_accuracy(vocab, frontend):
    segs = make_segments(vocab, frontend, n=3)
    b = pack(segs, row_length=64)
    # A "model" that is right on every target: loss ~0 and accuracy 1.
    logits = torch.full((*b.targets.shape, vocab.size), -30.0)
    tgt = b.targets.clamp(min=0)
    logits.scatter_(-1, tgt[..., None], 30.0)
    loss, m = lm_loss(logits, b, text_weight=0.5, audio_range=(vocab.audio_offset, vocab.audio_offset + vocab.n_audio))
    assert float(loss) < 1e-6 and m["audio_acc"] == 1.0 and m["stop_acc"] == 1.0
    # Uniform logits: both losses are log(V); text weight scales the text part only.
    flat = torch.zeros_like(logits)
    l0, m0 = lm_loss(flat, b, text_weight=0.0)
    l1, m1 = lm_loss(flat, b, text_weight=0.5)
    assert abs(m0["loss_audio"] - np.log(vocab.size)) < 1e-4
    assert abs(float(l1) - 1.5 * np.log(vocab.size)) < 1e-4 and abs(float(l0) - np.log(vocab.size)) < 1e-4


def test_segment_attention_gradients_match_mask_path(tiny_model, vocab, frontend):
    from llmtts.llm.attention import register

    b = pack(make_segments(vocab, frontend, n=5), row_length=80)
    grads = []
    for impl in ("sdpa", register()):
        tiny_model.set_attn_implementation(impl)
        tiny_model.zero_grad()
        logits = tiny_model(b.input_ids, position_ids=b.position_ids).logits
        lm_loss(logits, b, text_weight=0.3)[0].backward()
        grads.append([p.grad.clone() for p in tiny_model.parameters()])
    for g1, g2 in zip(*grads):
        torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-4)
