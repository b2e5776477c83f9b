"""Shared by the Soprano interop tests: one random decoder of Soprano's own shape (30 M parameters, a few seconds
to build and write), exported once per session."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def soprano_decoder_dir(tmp_path_factory):
    from llmtts.decoder.config import DecoderModelConfig
    from llmtts.decoder.export import save_decoder
    from llmtts.decoder.model import HiddenDecoder
    from llmtts.interop.soprano.decoder import SOPRANO_DECODER

    out = tmp_path_factory.mktemp("soprano_decoder") / "dec768"
    torch.manual_seed(0)
    save_decoder(HiddenDecoder(DecoderModelConfig(**SOPRANO_DECODER)), out)
    return out
