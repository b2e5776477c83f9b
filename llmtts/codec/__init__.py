"""Stage 1: the audio codec (waveform <-> one discrete token per ``samples_per_token`` samples).

``load_codec(path)`` loads a trained codec from a run directory or its ``export/``; see docs/codec.md.
"""
from __future__ import annotations


def load_codec(path, device="cpu"):
    """A run directory or its ``export/`` -> ``CodecModel`` in eval mode (lazy import keeps the CLI fast)."""
    from llmtts.codec.export import load_codec as _load

    return _load(path, device)


__all__ = ["load_codec"]
