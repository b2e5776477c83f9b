"""An LLM export carries the recipe's inference defaults (inference.json): TTS.load uses them, explicit
options override them, exports without one keep the built-in defaults, bad files are one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from llmtts.cli import main
from llmtts.config import load_config
from llmtts.decoder.export import save_decoder
from llmtts.decoder.model import HiddenDecoder
from llmtts.errors import UserError
from llmtts.infer.sampling import SamplingConfig
from llmtts.infer.tts import TTS, SynthesisOptions
from llmtts.llm.config import LLMConfig
from llmtts.llm.export import save_export

from infer_helpers import tiny_decoder_cfg, tiny_llm

TEXT = "Hello there, this is a test of the defaults."


@pytest.fixture(scope="module")
def greedy_export(tmp_path_factory):
    """An export whose recipe says: greedy, top_p 0.9, at most 6 tokens per sentence (top_k left unset)."""
    root = tmp_path_factory.mktemp("defaults")
    model, vocab, frontend = tiny_llm()
    save_export(model, vocab, frontend, root / "llm" / "export",
                inference={"temperature": 0, "top_p": 0.9, "max_tokens": 6, "top_k": None})
    torch.manual_seed(1)
    save_decoder(HiddenDecoder(tiny_decoder_cfg()), root / "dec" / "export")
    return root / "llm", root / "dec"


def test_inference_defaults_round_trip(greedy_export):
    saved = json.loads((greedy_export[0] / "export" / "inference.json").read_text())
    assert saved == {"temperature": 0.0, "top_p": 0.9, "max_tokens": 6}  # unset (None) entries are not written
    tts = TTS.load(*greedy_export)
    assert tts.options.sampling == SamplingConfig(temperature=0.0, top_p=0.9)  # the rest: built-in defaults
    assert tts.options.max_tokens == 6
    # used: greedy, so the seed does not matter; at most 6 tokens for the one sentence
    a, _ = tts.synthesize(TEXT, seed=1)
    b, _ = tts.synthesize(TEXT, seed=2)
    assert np.array_equal(a, b) and tts.last_stats["sentences"] == 1 and tts.last_stats["tokens"] <= 6


def test_explicit_options_override_the_export_defaults(greedy_export):
    tts = TTS.load(*greedy_export)
    o = tts.resolve_options(temperature=1.0, max_tokens=20, seed=0)
    assert o.sampling.temperature == 1.0 and o.max_tokens == 20
    assert o.sampling.top_p == 0.9  # what was not overridden stays the export's
    a, _ = tts.synthesize(TEXT, seed=1, temperature=1.0, top_k=20, max_tokens=20)
    b, _ = tts.synthesize(TEXT, seed=2, temperature=1.0, top_k=20, max_tokens=20)
    assert not (a.shape == b.shape and np.allclose(a, b))  # sampling now: the seed matters
    assert tts.options.sampling.temperature == 0.0  # a call's options never change the defaults


def test_export_without_inference_json_keeps_builtin_defaults(exports):
    assert not (exports[0] / "export" / "inference.json").exists()
    assert TTS.load(*exports).options == SynthesisOptions()


def test_synthesize_cli_uses_export_defaults_unless_told(greedy_export, tmp_path):
    llm, dec = greedy_export
    base = ["synthesize", "--text", TEXT, "--llm-path", str(llm), "--decoder-path", str(dec)]
    for seed in ("1", "2"):
        assert main([*base, "--seed", seed, "--out", str(tmp_path / f"g{seed}.wav")]) == 0
    g1, g2 = (sf.read(tmp_path / f"g{s}.wav")[0] for s in ("1", "2"))
    assert np.array_equal(g1, g2) and len(g1) <= 6 * 256  # greedy and max_tokens 6 from inference.json
    for seed in ("1", "2"):
        assert main([*base, "--seed", seed, "--temperature", "1.0", "--top-k", "20", "--max-tokens", "20",
                     "--out", str(tmp_path / f"s{seed}.wav")]) == 0
    s1, s2 = (sf.read(tmp_path / f"s{s}.wav")[0] for s in ("1", "2"))
    assert not (s1.shape == s2.shape and np.allclose(s1, s2))


@pytest.mark.parametrize("content,msg", [
    ('{"temperature": -1}', r"temperature must be in \[0, 10\]"),
    ('{"temperature": 1e308}', r"temperature must be in \[0, 10\]"),
    ('{"nope": 1}', "unknown key 'nope'"),
    ('{"top_k": 2.5}', "'top_k' must be an integer"),
    ('{"top_p": "high"}', "'top_p' must be a number"),
    ('[1, 2]', "expected a mapping"),
    ('{"temperature": 0.5', "not valid JSON"),
])
def test_bad_inference_json_is_one_line_error(exports, tmp_path, content, msg):
    import shutil

    llm = tmp_path / "llm"
    shutil.copytree(exports[0], llm)
    (llm / "export" / "inference.json").write_text(content)
    with pytest.raises(UserError, match=msg) as err:
        TTS.load(llm, exports[1])
    assert "inference.json" in str(err.value) and "\n" not in str(err.value)


def test_llm_config_inference_section():
    cfg = load_config(LLMConfig, None, ["inference.temperature=0.5", "inference.max_tokens=300"])
    assert vars(cfg.inference)["temperature"] == 0.5 and cfg.inference.max_tokens == 300
    assert cfg.inference.top_p is None  # unset: the inference code's default
    assert LLMConfig().inference.temperature is None  # no section: nothing written, old behaviour
    for bad, msg in (("inference.top_p=2", "top_p"), ("inference.tempreature=1", "tempreature"),
                     ("inference.max_tokens=0", "max_tokens")):
        with pytest.raises(UserError, match=msg):
            load_config(LLMConfig, None, [bad])


def test_save_export_refuses_bad_inference_defaults(tmp_path):
    model, vocab, frontend = tiny_llm()
    with pytest.raises(UserError, match="repetition_penalty"):
        save_export(model, vocab, frontend, tmp_path / "export", inference={"repetition_penalty": 0.5})
    assert not (tmp_path / "export").exists()  # refused before anything was written


def test_llm_stage_writes_the_recipes_inference_defaults(tmp_path):
    """The real LLM stage (2 steps): `inference.*` config keys end up in the export, and TTS.load uses them."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))
    from token_shards import make_token_shards

    shards = make_token_shards(tmp_path / "tok", n_train=4, n_val=2)
    run = tmp_path / "run"
    assert main(["llm", "train", "--input-dir", str(shards), "--save-dir", str(run), "--from-scratch",
                 "--config", "configs/llm/tiny.yaml", "trainer.max_steps=2", "log.progress=false",
                 "log.tensorboard=false", "vocab.n_audio=64", "model.num_hidden_layers=1", "model.hidden_size=32",
                 "model.intermediate_size=64", "model.head_dim=16", "model.num_attention_heads=2",
                 "model.num_key_value_heads=1", "inference.temperature=0", "inference.max_tokens=40"]) == 0
    assert json.loads((run / "export" / "inference.json").read_text()) == {"temperature": 0.0, "max_tokens": 40}
    torch.manual_seed(1)
    save_decoder(HiddenDecoder(tiny_decoder_cfg()), tmp_path / "dec" / "export")
    tts = TTS.load(run, tmp_path / "dec")
    assert tts.options.sampling.temperature == 0.0 and tts.options.max_tokens == 40
