"""``llmtts eval decoder``: resynthesis scores that rank decoders correctly, and clear errors."""
from __future__ import annotations

import json

import numpy as np
import torch

from llmtts.audio import encode_flac
from llmtts.cli import main
from llmtts.data.parallel_map import input_shards, iter_shard
from llmtts.data.reader import hidden_format_of
from llmtts.data.shards import ShardSetWriter, build_index, read_index, write_index
from llmtts.decoder.config import DecoderModelConfig
from llmtts.decoder.export import save_decoder
from llmtts.decoder.model import HiddenDecoder

from decoder_helpers import D, SPT, SR

MODEL = DecoderModelConfig(hidden_size=D, sample_rate=SR, samples_per_token=SPT, upsample=4, dim=32,
                           intermediate_dim=64, num_layers=2, n_fft=256, hop_length=64)


def _decoder(seed: int, path) -> HiddenDecoder:
    torch.manual_seed(seed)
    model = HiddenDecoder(MODEL).eval()
    save_decoder(model, path)
    return model


def _resynthesised_shards(src, out, model: HiddenDecoder):
    """The hidden shards of ``src`` with every recording replaced by ``model``'s own resynthesis."""
    summaries = []
    for rel in input_shards(src, ["val"]):
        w = ShardSetWriter(out, "val", samples_per_shard=10)
        for s in iter_shard(src / rel, fields=["audio", "hidden"], hidden_format=hidden_format_of(src)):
            with torch.no_grad():
                wav = model(torch.from_numpy(s["hidden"].astype(np.float32))[None])[0].numpy()
            assert np.abs(wav).max() < 1  # inside FLAC's range: the stored audio is the output to 16 bits
            w.write(s["__key__"], {"flac": encode_flac(wav, SR), "hidden.npy": s["hidden"].astype(np.float16),
                                   "json": s["json"]})
        summaries += w.close()
    idx = read_index(src)
    write_index(out, build_index("hidden", summaries, **{k: idx[k] for k in ("sample_rate", "samples_per_token")}))
    return out


def test_a_decoder_scores_best_on_its_own_resynthesis(data, tmp_path, capsys):
    own = _decoder(0, tmp_path / "own")
    _decoder(1, tmp_path / "other")
    shards = _resynthesised_shards(data["hidden"], tmp_path / "shards", own)
    scores = {}
    for name in ("own", "other"):
        out = tmp_path / f"eval_{name}"
        assert main(["eval", "decoder", "--decoder-path", str(tmp_path / name), "--input-dir", str(shards),
                     "--out", str(out)]) == 0
        report = json.loads((out / "decoder_eval.json").read_text())
        rows = [json.loads(line) for line in (out / "per_clip.jsonl").read_text().splitlines()]
        assert [r["key"] for r in rows] == ["val_000", "val_001"]  # every val clip, in stored order
        scores[name] = report["summary"]
    # Its own output differs from the shard audio only by 16-bit rounding.
    assert scores["own"]["si_sdr"] > 30 and scores["other"]["si_sdr"] < 10
    assert scores["other"]["mel_distance"] > 5 * scores["own"]["mel_distance"]


def test_wrong_inputs_are_one_line_errors(data, tmp_path, capsys):
    _decoder(0, tmp_path / "dec")
    (tmp_path / "empty").mkdir()
    for shards, message in ((data["tokens"], "tokens shards, not hidden shards"),
                            (tmp_path / "empty", "no index.json")):
        capsys.readouterr()
        assert main(["eval", "decoder", "--decoder-path", str(tmp_path / "dec"), "--input-dir", str(shards),
                     "--out", str(tmp_path / "o")]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
