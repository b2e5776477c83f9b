"""Session fixture: token shards with random codes, a tiny random LLM, and hidden shards made by the real
dump-hidden (helpers in decoder_helpers.py)."""
from __future__ import annotations

import pytest

from decoder_helpers import tiny_llm_export, write_token_shards


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    from llmtts.llm.dump import dump_hidden

    root = tmp_path_factory.mktemp("dec")
    tiny_llm_export(root / "llm" / "export")
    tokens = write_token_shards(root / "tokens")
    dump_hidden(root / "llm", tokens, root / "hidden", device="cpu", progress=False)
    return {"root": root, "llm": root / "llm", "tokens": tokens, "hidden": root / "hidden"}
