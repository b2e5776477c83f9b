"""The ladder's teacher-forced pass (``llmtts.eval.ladder``): the states it hands the decoder are the vectors
generation hands it for the same tokens, and its top-1 / NLL measure the LLM's predictions of those tokens."""
import numpy as np
import pytest
import torch

from llmtts.errors import UserError
from llmtts.eval.ladder import ReferenceCodec, teacher_forced_states, teacher_forcer

TEXT = "Hello there, this is a test."


@pytest.fixture(scope="module")
def tts(tiny_exports):
    from llmtts import TTS

    return TTS.load(*tiny_exports)


def test_teacher_forcing_the_models_own_greedy_tokens_gives_its_states_and_top1_one(tts):
    # greedy, no penalty (min_tokens=1 masks [stop] at the first step only; this seeded model does not want it there)
    o = tts.resolve_options(temperature=0.0, repetition_penalty=1.0, max_tokens=20)
    prompts = tts.prepare(TEXT, o)
    assert len(prompts) == 1
    hidden, codes = tts._generate(prompts, [0], o)
    codes = codes[0].numpy()
    assert codes.size >= 8
    states, top1, nll = teacher_forced_states(tts, TEXT, codes)
    # greedy without a penalty took every code as the argmax of these same states: the alignment of
    # llmtts.llm.hidden, and the same prompt from the raw text as TTS.prepare builds
    assert top1 == 1.0
    torch.testing.assert_close(states, hidden[0], rtol=1e-4, atol=1e-4)
    # the NLL is the model's: -log softmax of the chosen codes over [stop] + audio, recomputed here
    v = tts.vocab
    logits = tts.llm.lm_head(states)[:, v.stop: v.audio_offset + v.n_audio]
    ref = -torch.log_softmax(logits, -1)[torch.arange(len(codes)), torch.from_numpy(codes) + 1].mean()
    assert nll == pytest.approx(float(ref), rel=1e-4)
    # other tokens than the model's choices: fewer top-1, a higher NLL
    rng = np.random.default_rng(0)
    other = (codes + rng.integers(1, v.n_audio, codes.size)) % v.n_audio
    _, top1_other, nll_other = teacher_forced_states(tts, TEXT, other)
    assert top1_other < 0.5 and nll_other > nll


def test_teacher_forcer_refuses_a_codec_of_another_rate(tts, tmp_path):
    from pathlib import Path

    from llmtts.codec.config import CodecConfig
    from llmtts.codec.export import export_codec
    from llmtts.codec.model import CodecModel
    from llmtts.config import load_config

    cfg = load_config(CodecConfig, Path(__file__).resolve().parents[2] / "configs" / "codec" / "tiny.yaml").model
    assert cfg.samples_per_token != tts.samples_per_token  # the tiny test decoder: 256 samples per token
    export_codec(CodecModel(cfg), tmp_path / "codec")
    with pytest.raises(UserError, match="not the codec this model was trained on"):
        teacher_forcer(tts, ReferenceCodec(str(tmp_path / "codec")))
