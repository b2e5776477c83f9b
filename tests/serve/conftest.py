"""Tiny random-weight exports (tests/infer/infer_helpers.py) shared by the server tests."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # serve_helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infer"))  # infer_helpers: the tiny exports

pytest.importorskip("fastapi", reason="the server's dependencies are not installed (pip install -e '.[serve]')")


@pytest.fixture(scope="session")
def serve_exports(tmp_path_factory):
    from infer_helpers import write_tiny_exports

    return write_tiny_exports(tmp_path_factory.mktemp("serve_tts"))


@pytest.fixture(scope="session")
def serve_tts(serve_exports):
    from llmtts import TTS

    return TTS.load(*serve_exports)
