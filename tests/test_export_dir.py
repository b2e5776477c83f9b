"""Exports carry the sha256 of their weight files and loaders verify it; NaN / inf weights are refused at load."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "infer"))  # infer_helpers: the tiny exports

from infer_helpers import tiny_decoder_cfg, tiny_llm  # noqa: E402
from llmtts.decoder.export import load_decoder, save_decoder  # noqa: E402
from llmtts.decoder.model import HiddenDecoder  # noqa: E402
from llmtts.errors import UserError  # noqa: E402
from llmtts.io import OUTPUT_MARKER  # noqa: E402
from llmtts.llm.export import load_llm, save_export  # noqa: E402


def flip_a_byte(path: Path, offset_from_end: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_the_weights_is_refused_naming_the_file(tmp_path):
    model, vocab, frontend = tiny_llm()
    out = save_export(model, vocab, frontend, tmp_path / "llm")
    marker = json.loads((out / OUTPUT_MARKER).read_text())
    assert set(marker["sha256"]) == {"model.safetensors"}
    load_llm(out)  # intact: loads
    flip_a_byte(out / "model.safetensors")  # a weight's bits: safetensors itself would load it silently
    with pytest.raises(UserError, match="sha256") as e:
        load_llm(out)
    assert "model.safetensors" in str(e.value) and "\n" not in str(e.value)
    torch.manual_seed(1)
    dec = save_decoder(HiddenDecoder(tiny_decoder_cfg()), tmp_path / "dec")
    load_decoder(dec)
    flip_a_byte(dec / "model.safetensors")
    with pytest.raises(UserError, match="sha256"):
        load_decoder(dec)


def test_an_export_without_checksums_loads_with_one_warning(tmp_path, caplog):
    model, vocab, frontend = tiny_llm()
    out = save_export(model, vocab, frontend, tmp_path / "llm")
    (out / OUTPUT_MARKER).unlink()  # as exports made before the checksums, or by hand
    with caplog.at_level(logging.WARNING):
        load_llm(out)
        load_llm(out)
    assert sum("loaded unverified" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path, bad):
    model, vocab, frontend = tiny_llm()
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[3, 5] = bad
    out = save_export(model, vocab, frontend, tmp_path / "llm")
    with pytest.raises(UserError, match="NaN or inf") as e:
        load_llm(out)
    assert "down_proj" in str(e.value) and "\n" not in str(e.value)
    dec = HiddenDecoder(tiny_decoder_cfg())
    with torch.no_grad():
        next(dec.parameters()).view(-1)[0] = bad
    with pytest.raises(UserError, match="NaN or inf"):
        load_decoder(save_decoder(dec, tmp_path / "dec"))
