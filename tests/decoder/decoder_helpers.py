"""Token shards with random codes and a tiny random LLM export, for the decoder tests."""
from __future__ import annotations

import numpy as np
import torch

from llmtts.audio import encode_flac
from llmtts.data.shards import ShardSetWriter, build_index, write_index
from llmtts.llm.export import save_export
from llmtts.llm.model import LLMModelConfig, build_model
from llmtts.llm.tokenizer import DEFAULT_SYMBOLS, build_frontend
from llmtts.llm.vocab import Vocab, round_up

SR, SPT, D, N_AUDIO = 16000, 256, 32, 64
TEXTS = ["hello there, general kenobi.", "the quick brown fox.", "one two three four five six.",
         "a short one.", "what time is it?", "numbers like seven and nine."]


def tiny_llm_export(path, hidden: int = D):
    torch.manual_seed(0)
    n_text = len(DEFAULT_SYMBOLS)
    vocab = Vocab(n_audio=N_AUDIO, n_text=n_text, text_symbols=DEFAULT_SYMBOLS)
    vocab = Vocab(n_audio=N_AUDIO, n_text=n_text, text_symbols=DEFAULT_SYMBOLS, size=round_up(vocab.used))
    cfg = LLMModelConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=16, max_position_embeddings=1024)
    save_export(build_model(cfg, vocab.size).eval(), vocab, build_frontend("chars", "english"), path)
    return path


def write_token_shards(out, n_per_split=(6, 2)):
    rng = np.random.default_rng(0)
    summaries = []
    for split, n in zip(("train", "val"), n_per_split):
        w = ShardSetWriter(out, split, samples_per_shard=3)
        for i in range(n):
            T = int(rng.integers(12, 40))
            t = np.arange(T * SPT) / SR
            wav = (0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)).astype(np.float32)
            text = TEXTS[i % len(TEXTS)]
            w.write(f"{split}_{i:03d}", {"flac": encode_flac(wav, SR),
                                         "codes.npy": rng.integers(0, N_AUDIO, T).astype(np.int16),
                                         "json": {"text": text, "normalized_text": text, "speaker": "s0",
                                                  "duration_s": T * SPT / SR, "sample_rate": SR, "source": "test",
                                                  "n_tokens": T, "samples_per_token": SPT, "num_samples": T * SPT}})
        summaries += w.close()
    write_index(out, build_index("tokens", summaries, sample_rate=SR, samples_per_token=SPT,
                                 codebook_size=N_AUDIO, num_codebooks=1))
    return out


TINY_OVERRIDES = ["model.hidden_size=32", "model.sample_rate=16000", "model.samples_per_token=256",
                  "model.upsample=4", "model.dim=32", "model.intermediate_dim=64", "model.num_layers=2",
                  "model.n_fft=256", "model.hop_length=64",
                  "loss.mel_resolutions=[[256,64,32],[128,32,16]]", "loss.stft_resolutions=[[256,64,256],[128,32,128]]",
                  "gan.periods=[2,3]", "gan.resolutions=[[256,64,256]]", "gan.channels=4",
                  "recon_crop_tokens=16", "gan_crop_tokens=8", "data.batch_budget=16384", "data.max_batch_size=4",
                  "data.shuffle_buffer=4", "trainer.device=cpu", "trainer.precision=fp32", "trainer.log_every=1",
                  "trainer.eval_batches=1", "log.tensorboard=false", "log.progress=false"]
