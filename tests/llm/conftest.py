"""Shared tiny objects for the LLM tests (a 2-layer, 64-d Qwen3 builds in milliseconds)."""
from __future__ import annotations

import pytest
import torch

from llmtts.llm.model import LLMModelConfig, build_model
from llmtts.llm.tokenizer import Frontend, build_frontend
from llmtts.llm.vocab import Vocab, round_up

TINY_MODEL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32)


@pytest.fixture
def frontend() -> Frontend:
    return build_frontend("chars", normalizer="none")


@pytest.fixture
def vocab(frontend) -> Vocab:
    n_text = len(frontend.tokenizer)
    return Vocab(n_audio=50, n_text=n_text, text_symbols=frontend.tokenizer.symbols,
                 size=round_up(4 + 50 + n_text))


@pytest.fixture
def tiny_model(vocab):
    torch.manual_seed(0)
    return build_model(LLMModelConfig(**TINY_MODEL), vocab.size).eval()
