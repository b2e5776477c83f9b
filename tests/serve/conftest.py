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


# Sentences that never stop early and run ~40 tokens per text id: one sentence of the fault tests holds its batch
# row for seconds (~3 s for 85 characters on a 2-core machine), so "the row is busy" is a state the test
# arranges, not a race against a random model's [stop].
SLOW_INFERENCE = {"tokens_per_text_id": 40.0, "max_tokens": 3500}


@pytest.fixture(scope="session")
def slow_exports(tmp_path_factory):
    from infer_helpers import write_tiny_exports

    return write_tiny_exports(tmp_path_factory.mktemp("slow_tts"), inference=SLOW_INFERENCE, never_stop=True)


@pytest.fixture(scope="session")
def slow_tts(slow_exports):
    from llmtts import TTS

    return TTS.load(*slow_exports)


@pytest.fixture(scope="session")
def key_server(serve_exports, tmp_path_factory):
    """A server with an API key, 4 batch rows and small limits, shared by the HTTP and web page tests."""
    from serve_helpers import KEY, ServerProcess

    key = tmp_path_factory.mktemp("key") / "key.txt"
    key.write_text(KEY + "\n")
    srv = ServerProcess(*serve_exports, "--max-batch", "4", "--max-chars", "400", "--max-body-bytes", "4096",
                        "--api-key-file", str(key))
    yield srv
    srv.kill()
