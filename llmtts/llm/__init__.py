"""Stage 2: text -> audio-token LLM (Qwen3), packing, training stage, hidden-state dumps.

Public entry points: ``load_llm(path) -> (model, vocab, frontend)``, and the alignment helpers in
``llmtts.llm.hidden`` (``prompt_ids``, ``training_ids``, ``forward_with_hidden``, ``audio_hidden_states``).
"""


def load_llm(path, device="cpu", dtype=None, attn_implementation="sdpa"):
    """``(model, vocab, frontend)`` from a run dir or its ``export/`` dir (imports torch lazily)."""
    import torch

    from llmtts.llm.export import load_llm as _load

    return _load(path, device=device, dtype=dtype or torch.float32, attn_implementation=attn_implementation)
