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
    """Same length and max |actual - expected| <= rel x peak |expected|.

    Tolerances are relative to the signal, not absolute: CPU kernels (AVX2 vs AVX-512/AMX, oneDNN blocking
    chosen by tensor shape) round differently from host to host (fp32 chunked vs whole decoding: 1e-4 x peak
    seen on an AMD EPYC), while the bugs these tests catch (wrong chunk edges, dropped or repeated tokens,
    cross-talk between batch rows) change the audio by O(peak): 1e-3 x peak separates the two."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"length {actual.shape} != {expected.shape}"
    peak = float(np.abs(expected).max()) if expected.size else 0.0
    worst = float(np.abs(actual - expected).max()) if expected.size else 0.0
    assert worst <= rel * max(peak, 1e-3), f"max |diff| {worst:.3g} > {rel:g} x peak {peak:.3g}"


def write_tiny_exports(root):
    """``(llm dir, decoder dir)`` of random-weight exports under ``root`` (synthesis is noise, but every code
    path of a real model runs)."""
    from llmtts.decoder.export import save_decoder
    from llmtts.decoder.model import HiddenDecoder
    from llmtts.llm.export import save_export

    model, vocab, frontend = tiny_llm()
    save_export(model, vocab, frontend, root / "llm" / "export")
    torch.manual_seed(1)
    save_decoder(HiddenDecoder(tiny_decoder_cfg()), root / "dec" / "export")
    return root / "llm", root / "dec"
