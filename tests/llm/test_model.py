from llmtts.llm.model import LLMModelConfig, build_model, count_parameters


def test_soprano_architecture_parameter_count():
    """configs/llm/soprano-80m.yaml is Soprano's LLM; built on the meta device (no memory, milliseconds)."""
    from pathlib import Path

    from llmtts.config import load_config
    from llmtts.llm.config import LLMConfig
    from llmtts.llm.stage import embedding_rows
    from llmtts.llm.tokenizer import build_frontend
    from llmtts.llm.vocab import Vocab

    cfg = load_config(LLMConfig, Path(__file__).parents[2] / "configs" / "llm" / "soprano-80m.yaml")
    fe = build_frontend(cfg.vocab.tokenizer, cfg.vocab.normalizer)
    vocab = Vocab(n_audio=cfg.vocab.n_audio, n_text=len(fe.tokenizer), text_symbols=fe.tokenizer.symbols)
    assert embedding_rows(cfg, vocab) == 8192 and vocab.audio_ids([0, 7999]).tolist() == [4, 8003]
    model = build_model(cfg.model, vocab_size=embedding_rows(cfg, vocab), device="meta")
    assert count_parameters(model) == 79_714_048
    assert count_parameters(build_model(LLMModelConfig(), 8192, device="meta")) == 79_714_048  # the defaults too
    assert model.config.use_cache is False  # packed training needs no cache (see packing.py)
    assert model.lm_head.weight is not model.model.embed_tokens.weight


def test_init_from_plain_hf_dir_keeps_body_and_resizes(tmp_path, vocab):
    """A Qwen3 directory without our vocab.json: body kept, embeddings resized and fresh, reported."""
    import torch

    from llmtts.llm.init import init_from

    src = build_model(LLMModelConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=2, num_key_value_heads=1, head_dim=32), vocab_size=500)
    src.save_pretrained(str(tmp_path / "plain"))
    model, report = init_from(tmp_path / "plain", vocab, vocab.size)
    assert model.get_input_embeddings().weight.shape == (vocab.size, 64)
    assert model.lm_head.weight.shape == (vocab.size, 64) and model.config.vocab_size == vocab.size
    assert "all" in report and "start fresh" in report and "source had 500" in report
    torch.testing.assert_close(model.model.layers[1].self_attn.q_proj.weight, src.model.layers[1].self_attn.q_proj.weight)
    out = model(torch.tensor([[vocab.stop, vocab.text_start, vocab.speech_start]]))
    assert out.logits.shape[-1] == vocab.size and torch.isfinite(out.logits).all()


def test_attention_dropout_regularises_training_only(tmp_path, vocab):
    """model.attention_dropout drops attention weights in training mode only, from scratch and after --init-from
    (where the source's own config would otherwise keep its rate)."""
    import pytest
    import torch

    from llmtts.llm.init import init_from
    from llmtts.llm.model import set_attention_dropout

    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=32)
    torch.manual_seed(0)
    plain = build_model(LLMModelConfig(**shape), vocab_size=vocab.size)
    drop = build_model(LLMModelConfig(**shape, attention_dropout=0.5), vocab_size=vocab.size)
    drop.load_state_dict(plain.state_dict())
    ids = torch.arange(4, 36)[None] % vocab.size
    drop.train()
    a, b = drop(ids).logits, drop(ids).logits
    assert not torch.allclose(a, b)  # a fresh mask per forward
    drop.eval(), plain.eval()
    torch.testing.assert_close(drop(ids).logits, plain(ids).logits)  # inference: no dropout at all

    plain.save_pretrained(str(tmp_path / "src"))
    loaded, _ = init_from(tmp_path / "src", vocab, vocab.size)
    set_attention_dropout(loaded.train(), 0.5)
    assert not torch.allclose(loaded(ids).logits, loaded(ids).logits)
    with pytest.raises(ValueError, match="attention_dropout"):
        LLMModelConfig(attention_dropout=1.0)


def test_the_stage_trains_an_init_from_model_in_training_mode_with_the_configured_dropout(tiny_model, tmp_path):
    """``from_pretrained`` hands back a model in eval mode: the stage must switch it to training mode and give it
    the config's attention dropout, or a fine-tune would silently train without the regulariser."""
    from pathlib import Path

    from llmtts.config import load_config
    from llmtts.llm.config import LLMConfig
    from llmtts.llm.stage import LLMStage
    from token_shards import make_token_shards

    shards = make_token_shards(tmp_path / "tok", n_train=4, n_val=0)
    tiny_model.save_pretrained(tmp_path / "src")
    tiny = Path(__file__).parents[2] / "configs" / "llm" / "tiny.yaml"
    for start in (["from_scratch=true"], [f"init_from={tmp_path / 'src'}"]):
        cfg = load_config(LLMConfig, tiny, overrides=[*start, "model.attention_dropout=0.2", "log.tensorboard=false"])
        model = LLMStage(cfg, tmp_path / f"run{len(start[0])}", shards).build_models()["model"]
        assert model.training, start
        assert {layer.self_attn.attention_dropout for layer in model.model.layers} == {0.2}, start
