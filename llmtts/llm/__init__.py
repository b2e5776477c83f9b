"""Stage 2: text -> audio-token LLM (Qwen3), packing, training stage, hidden-state dumps.

Public entry points: ``load_llm(path) -> (model, vocab, frontend)``, and the alignment helpers in
``llmtts.llm.hidden`` (``prompt_ids``, ``training_ids``, ``forward_with_hidden``, ``audio_hidden_states``).
"""


def __getattr__(name):
    # Lazy (``import llmtts.llm`` must not import torch/transformers): ``llmtts.llm.load_llm`` is
    # ``llmtts.llm.export.load_llm`` itself, not a second function of the same name.
    if name == "load_llm":
        from llmtts.llm.export import load_llm

        return load_llm
    raise AttributeError(name)
