"""Tiny random-weight LLM + decoder exports, built once per test session (no trained pipeline needed)."""
from __future__ import annotations

import pytest
import torch

from llmtts.decoder.export import save_decoder
from llmtts.decoder.model import HiddenDecoder
from llmtts.llm.export import save_export

from infer_helpers import tiny_decoder_cfg, tiny_llm


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("tts")
    model, vocab, frontend = tiny_llm()
    save_export(model, vocab, frontend, root / "llm" / "export")
    torch.manual_seed(1)
    save_decoder(HiddenDecoder(tiny_decoder_cfg()), root / "dec" / "export")
    return root / "llm", root / "dec"


@pytest.fixture(scope="session")
def tts(exports):
    from llmtts import TTS

    return TTS.load(*exports)
