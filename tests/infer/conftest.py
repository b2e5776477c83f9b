"""Tiny random-weight LLM + decoder exports, built once per test session (no trained pipeline needed)."""
from __future__ import annotations

import pytest

from infer_helpers import write_tiny_exports


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    return write_tiny_exports(tmp_path_factory.mktemp("tts"))


@pytest.fixture(scope="session")
def tts(exports):
    from llmtts import TTS

    return TTS.load(*exports)
