"""The decoder on hidden shards of each storage format: it trains from them through the CLI, and the
on-the-fly mode (``hidden_dtype``) rounds the LLM's states as those shards store them."""
from __future__ import annotations

import json

import pytest
import torch

from llmtts.cli import main
from llmtts.config import load_config
from llmtts.data.hidden_format import HiddenFormat
from llmtts.decoder.config import DecoderConfig
from llmtts.decoder.stage import DecoderStage
from llmtts.llm.dump import dump_hidden

from decoder_helpers import TINY_OVERRIDES


@pytest.fixture(scope="module")
def dumps(data):
    out = {}
    for dtype, comp in (("bf16", "none"), ("int8", "zlib")):
        out[dtype] = data["root"] / f"hidden-{dtype}-{comp}"
        dump_hidden(data["llm"], data["tokens"], out[dtype], device="cpu", progress=False,
                    hidden_format=HiddenFormat(dtype, comp))
    return out


def crops(stage):
    out = {}
    for batch in stage.loader("train", 0, 1, train=False):
        x = stage.inputs(batch, torch.device("cpu"))
        for it, h in zip(batch.items, x):
            if it.key in out:
                return out
            out[it.key] = (it.start, h[: batch.n])
    return out


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_on_the_fly_rounds_like_the_shards(data, dumps, dtype):
    base = TINY_OVERRIDES + ["recon_crop_tokens=1000", f"hidden_dtype={dtype}"]
    shards = crops(DecoderStage(load_config(DecoderConfig, None, base), data["root"] / "a", dumps[dtype]))
    otf = crops(DecoderStage(load_config(DecoderConfig, None, base + [f"llm_path={data['llm']}"]),
                             data["root"] / "b", data["tokens"]))
    assert set(shards) == set(otf) and len(shards) == 6
    same = total = 0
    for key, (start, a) in shards.items():
        b_start, b = otf[key]
        assert start == b_start and a.shape == b.shape
        # Packed (dump) and one-utterance (on-the-fly) forwards differ at float level; after rounding to the
        # format a value is equal or one step of the format apart.
        step = a.abs().amax(-1, keepdim=True) / 127 if dtype == "int8" else a.abs() * 2.0 ** -7
        assert ((a - b).abs() <= 1.01 * step + 1e-6).all()
        same += int((a == b).sum())
        total += a.numel()
    assert same / total > 0.95


def test_decoder_trains_from_int8_zlib_shards(data, dumps, tmp_path):
    index = json.loads((dumps["int8"] / "index.json").read_text())
    assert (index["hidden_dtype"], index["hidden_compression"]) == ("int8", "zlib")
    run = tmp_path / "run"
    assert main(["decoder", "train", "--input-dir", str(dumps["int8"]), "--save-dir", str(run), "--stage", "recon",
                 "trainer.max_steps=2", *TINY_OVERRIDES]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") == "train"]
    assert [r["step"] for r in train] == [1, 2] and all(torch.isfinite(torch.tensor(r["loss"])) for r in train)
    assert (run / "export" / "model.safetensors").is_file()
