from llmtts.llm.model import LLMModelConfig, build_model, count_parameters


def test_soprano_architecture_parameter_count():
    # Defaults are Soprano's LLM; built on the meta device (no memory, milliseconds).
    model = build_model(LLMModelConfig(), vocab_size=8192, device="meta")
    assert count_parameters(model) == 79_714_048
    assert model.config.use_cache is False  # packed training needs no cache (see packing.py)
    assert model.lm_head.weight is not model.model.embed_tokens.weight
