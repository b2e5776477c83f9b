"""Tiny random-weight LLM and decoder builders for the inference tests."""
from __future__ import annotations

import numpy as np
import torch

from llmtts.decoder.config import DecoderModelConfig
from llmtts.llm.model import LLMModelConfig, build_model
from llmtts.llm.tokenizer import DEFAULT_SYMBOLS, build_frontend
from llmtts.llm.vocab import Vocab, round_up

N_AUDIO = 64
HIDDEN = 32


def tiny_llm(hidden: int = HIDDEN, n_audio: int = N_AUDIO, seed: int = 0, speakers: tuple[str, ...] = ()):
    torch.manual_seed(seed)
    vocab = Vocab(n_audio=n_audio, n_text=len(DEFAULT_SYMBOLS), speakers=speakers, text_symbols=DEFAULT_SYMBOLS)
    vocab = Vocab(n_audio=n_audio, n_text=vocab.n_text, speakers=speakers, text_symbols=DEFAULT_SYMBOLS,
                  size=round_up(vocab.used))
    cfg = LLMModelConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=16, max_position_embeddings=4096)
    model = build_model(cfg, vocab.size).eval()
    # Random init gives near-uniform logits; a larger head spreads them so sampling options matter.
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    return model, vocab, build_frontend("chars", "english")


def tiny_decoder_cfg(hidden: int = HIDDEN) -> DecoderModelConfig:
    return DecoderModelConfig(hidden_size=hidden, sample_rate=16000, samples_per_token=256, upsample=4, dim=32,
                              intermediate_dim=64, num_layers=2, n_fft=256, hop_length=64)


def assert_audio_close(actual, expected, rel: float = 1e-3) -> None:
    """Same length and max |actual - expected| <= rel x peak |expected| (the server tests: its batched rows
    against ``synthesize`` alone, fp32).

    Where the audio can differ is derived in ``fp16_flip_bound``: fp32 noise between a batched and a one-row
    forward flips a state's float16 rounding by one step; summed over every element near a rounding midpoint,
    through the tiny test decoder, that is at most 8.4e-5 = 4.2e-4 x peak (16 sentences, 4 seeds). 1e-3 x peak
    covers it on any CPU, while the bugs these tests catch (wrong chunk edges, dropped or repeated tokens,
    cross-talk between batch rows) change the audio by O(peak). Tests of ``TTS`` itself use the per-state
    bound directly."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"length {actual.shape} != {expected.shape}"
    peak = float(np.abs(expected).max()) if expected.size else 0.0
    worst = float(np.abs(actual - expected).max()) if expected.size else 0.0
    assert worst <= rel * max(peak, 1e-3), f"max |diff| {worst:.3g} > {rel:g} x peak {peak:.3g}"


def never_stop_(model, vocab) -> None:
    """Make a tiny model that never samples [stop]: its logit pinned at 0 while the audio logits are spread ~10x
    wider (top-p keeps only tokens near the largest logit). A random model otherwise stops after a random few
    dozen tokens, so how long a sentence holds its batch row is chance; with this it runs to ``max_new_tokens``."""
    with torch.no_grad():
        model.lm_head.weight[vocab.stop].zero_()
        model.lm_head.weight[vocab.audio_offset: vocab.audio_offset + vocab.n_audio].mul_(10)


def write_tiny_exports(root, inference: dict | None = None, never_stop: bool = False):
    """``(llm dir, decoder dir)`` of random-weight exports under ``root`` (synthesis is noise, but every code
    path of a real model runs). ``inference``: the export's synthesis defaults; ``never_stop``: see
    ``never_stop_``."""
    from llmtts.decoder.export import save_decoder
    from llmtts.decoder.model import HiddenDecoder
    from llmtts.llm.export import save_export

    model, vocab, frontend = tiny_llm()
    if never_stop:
        never_stop_(model, vocab)
    save_export(model, vocab, frontend, root / "llm" / "export", inference=inference)
    torch.manual_seed(1)
    save_decoder(HiddenDecoder(tiny_decoder_cfg()), root / "dec" / "export")
    return root / "llm", root / "dec"


# Audio tolerances derived from the precision (see fp16_flip_bound and docs/testing.md):
# the decoder run on other tensor shapes (stream windows vs a whole sentence) rounds its sums in another order:
# fp32 ~1e3 ulps of the peak (reductions of up to ~10^3 terms), bf16 autocast a few ulps (8 bits: 2^-8 each).
FP32_DECODER_REL = 2.0 ** -13
BF16_DECODER_REL = 2.0 ** -5
# A bf16 state carries 8 significant bits (2^-8 relative per rounding); two forwards that differ only in summation
# order (a batched vs a one-row forward, a masked whole-cache vs a sliced attention) differ by ~2 such roundings
# (0.8 % measured on AMD AVX2 and AVX-512 hosts); 4 leaves room for other CPUs' kernels.
BF16_STATE_REL = 2.0 ** -6
# fp32 states of the same sentence from a batched vs a one-row forward differ by ~3e-7 x their scale (measured);
# 1e-5 leaves ~30x for other CPUs' kernels.
FP32_STATE_NOISE = 1e-5


def fp16_flip_bound(decoder, hidden: torch.Tensor, noise: float = FP32_STATE_NOISE) -> float:
    """The largest change of ``decoder``'s audio that fp32 noise of relative size ``noise`` in ``hidden`` [T, d]
    can cause once the states are rounded to float16 (``shard_precision``, as inference does).

    Noise that small moves a state's fp16 value by at most one ulp, and only where the fp32 value lies within
    ``noise`` of a rounding midpoint. Each such element is flipped to its other neighbour, one at a time, and the
    decoder's responses are summed (the worst case: every candidate flips, with the worst signs)."""
    h = hidden.detach().float()
    r = h.half().float()
    ulp = 2.0 ** (torch.floor(torch.log2(r.abs().clamp(min=2.0 ** -14))) - 10)
    scale = h.abs().amax(dim=1, keepdim=True)
    near_midpoint = (ulp / 2 - (h - r).abs()) <= noise * scale
    cand = near_midpoint.nonzero().tolist()
    if not cand:
        return 0.0
    side = torch.where(h >= r, 1.0, -1.0)
    batch = r.repeat(len(cand) + 1, 1, 1)
    for k, (t, j) in enumerate(cand):
        batch[k + 1, t, j] += side[t, j] * ulp[t, j]
    with torch.no_grad():
        wav = decoder(batch).double()
    return float((wav[1:] - wav[0]).abs().sum(0).max())


def assert_within(actual, expected, bound: float, what: str) -> None:
    """Same length and max |actual - expected| <= bound."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: length {actual.shape} != {expected.shape}"
    worst = float(np.abs(actual - expected).max()) if expected.size else 0.0
    assert worst <= bound, f"{what}: max |diff| {worst:.3g} > bound {bound:.3g}"


def generated(tts, texts, seed, **options):
    """``(states, codes)`` of every sentence of ``texts`` (one list over all texts' sentences, in order),
    generated as ``tts.synthesize_batch(texts, seed=seed, **options)`` generates them."""
    from llmtts.infer.tts import _sentence_seed

    o = tts.resolve_options(seed=seed, **options)
    prompts = [tts.prepare(t, o) for t in texts]
    seeds = [_sentence_seed(seed, j) for ps in prompts for j in range(len(ps))]
    return tts._generate([p for ps in prompts for p in ps], seeds, o)
