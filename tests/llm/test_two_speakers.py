"""A tiny two-speaker LLM (speaker table from the shards' index) through the real trainer, export and
``llmtts synthesize --speaker``: the speaker token reaches the prompt and changes the audio."""
import json

import numpy as np
import soundfile as sf
import torch

from llmtts.cli import main
from test_train import train
from token_shards import make_token_shards

SPEAKERS = ("en+m3", "en-us+f3")  # names as the built-in two-voice eSpeak corpus writes them


def _random_decoder(path, hidden: int = 64):
    from llmtts.decoder.config import DecoderModelConfig
    from llmtts.decoder.export import save_decoder
    from llmtts.decoder.model import HiddenDecoder

    torch.manual_seed(0)
    cfg = DecoderModelConfig(hidden_size=hidden, sample_rate=16000, samples_per_token=256, upsample=4, dim=32,
                             intermediate_dim=64, num_layers=2, n_fft=256, hop_length=64)
    save_decoder(HiddenDecoder(cfg), path)


def test_each_speaker_gives_its_own_audio_and_unknown_is_one_line(tmp_path, capsys):
    shards = make_token_shards(tmp_path / "tok", n_train=8, n_val=2, speakers=SPEAKERS)
    run = tmp_path / "llm"
    assert train(shards, run, "trainer.max_steps=3", "vocab.speakers=auto") == 0
    assert json.loads((run / "export" / "vocab.json").read_text())["speakers"] == sorted(SPEAKERS)
    assert main(["info", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["speakers"] == sorted(SPEAKERS)
    _random_decoder(tmp_path / "dec" / "export")

    def say(name, *speaker):
        out = tmp_path / f"{name}.wav"
        rc = main(["synthesize", "--text", "the quick brown fox", "--llm-path", str(run), "--decoder-path",
                   str(tmp_path / "dec"), "--out", str(out), "--seed", "0", "--max-tokens", "24", *speaker])
        return (sf.read(out, dtype="float32")[0] if rc == 0 else None), rc

    (male, _), (female, _), (default, _) = say("m", "--speaker", "en+m3"), say("f", "--speaker", "en-us+f3"), say("d")
    assert male.size and female.size
    n = min(male.size, female.size)
    assert male.size != female.size or float(np.abs(male[:n] - female[:n]).max()) > 1e-3 * float(np.abs(male).max())
    np.testing.assert_array_equal(default, male)  # no --speaker: the model's first speaker
    capsys.readouterr()
    wav, rc = say("x", "--speaker", "joe")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line: no weight-loading progress bar before it
    err = err[0]
    assert rc == 2 and wav is None and err.startswith("llmtts: error: unknown speaker 'joe'")
    assert err.endswith("this model's speakers: en+m3, en-us+f3")
