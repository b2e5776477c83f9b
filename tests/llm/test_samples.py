"""samples.*: during LLM training, held-out sentences are synthesised with the current weights, decoded (by the
tokens' codec, or a given decoder), logged as audio and judged by the offline ASR."""
from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

from llmtts.cli import main
from token_shards import make_token_shards
from test_train import FAST, TINY, metrics


def _codec_export(path):
    from llmtts.codec.config import CodecConfig
    from llmtts.codec.export import export_codec
    from llmtts.codec.model import CodecModel
    from llmtts.config import load_config

    torch.manual_seed(0)
    export_codec(CodecModel(load_config(CodecConfig, "configs/codec/tiny.yaml", []).model), path)
    return path


def test_samples_through_the_tokens_codec_are_logged_and_judged(tmp_path):
    pytest.importorskip("faster_whisper")
    shards = make_token_shards(tmp_path / "tok", n_train=8, n_val=4)
    index = json.loads((shards / "index.json").read_text())
    index["codec"] = str(_codec_export(tmp_path / "codec"))  # what `codec encode` records
    (shards / "index.json").write_text(json.dumps(index))
    run = tmp_path / "run"
    assert main(["llm", "train", "--input-dir", str(shards), "--save-dir", str(run), "--from-scratch", "--config",
                 TINY, *FAST, "trainer.max_steps=6", "trainer.eval_every=2", "samples.every=4", "samples.num=2",
                 "samples.max_tokens=8", "samples.texts=[hello there.,a second sentence.]"]) == 0
    rounds = metrics(run, "samples")
    assert [m["step"] for m in rounds] == [2, 6]  # first evaluation, then >= 4 steps later (the end)
    assert all(0.0 <= m["sample_wer"] and m["sample_runaway"] in (0.0, 0.5, 1.0) for m in rounds)
    wavs = sorted((run / "samples").glob("samples_*"))
    assert len(wavs) == 4  # 2 sentences x 2 rounds
    info = sf.info(str(wavs[0]))
    assert info.samplerate == 16000 and 0 < info.frames <= 8 * 1024 and info.frames % 1024 == 0


def test_samples_without_codec_or_decoder_is_a_one_line_error(tmp_path, capsys):
    shards = make_token_shards(tmp_path / "tok", n_train=8, n_val=4)
    code = main(["llm", "train", "--input-dir", str(shards), "--save-dir", str(tmp_path / "run"), "--from-scratch",
                 "--config", TINY, *FAST, "trainer.max_steps=2", "samples.every=1", "samples.judge=false"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("llmtts: error:") and "samples.decoder" in err[-1]
