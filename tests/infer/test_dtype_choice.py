"""``--dtype auto`` (``dtype_choice.py``): every candidate is checked by the canary and timed; the fastest usable
one is picked, and a format broken on this CPU is never picked however fast it is."""
from __future__ import annotations

import copy

import llmtts.infer.quant_int4 as quant_int4
from llmtts import TTS
from llmtts.cli import main
from llmtts.infer.dtype_choice import FormatRow, candidates_for, measure_formats, pick
from llmtts.infer.quant_int4 import packing_block_rows
from test_canary import canary_prompt, half_block_model


def test_auto_loads_the_fastest_format_the_canary_clears(exports):
    tts = TTS.load(*exports, dtype="auto")
    table = tts.format_table
    assert [r.dtype for r in table] == list(candidates_for(next(tts.llm.parameters()).device))
    assert tts.dtype == pick(table) and tts.dtype in {r.dtype for r in table if r.usable}
    assert all(r.ms_per_token > 0 for r in table if r.usable)
    assert (tts.canary is None) == (tts.dtype == "fp32")


def test_pick_takes_the_fastest_usable_row_only():
    rows = [FormatRow("fp32", 20.0, True, "reference"), FormatRow("int8", 12.0, True, ""),
            FormatRow("int4", None, False, "refused"), FormatRow("bf16", 15.0, True, "")]
    assert pick(rows) == "int8"
    assert pick(rows[:1] + rows[2:3]) == "fp32"


def test_a_format_broken_on_this_cpu_is_never_picked(monkeypatch):
    model, vocab, frontend = half_block_model()
    monkeypatch.setattr(quant_int4, "packing_block_rows", lambda: packing_block_rows() // 2)
    rows = {r.dtype: r for r in measure_formats(copy.deepcopy(model), canary_prompt(vocab, frontend), vocab,
                                                dtypes=("fp32", "int4"))}
    assert not rows["int4"].usable and rows["int4"].ms_per_token is None and "states" in rows["int4"].note
    assert pick(list(rows.values())) == "fp32"


def test_info_formats_prints_the_measured_table(exports, capsys):
    assert main(["info", str(exports[0]), "--formats"]) == 0
    out = capsys.readouterr().out
    assert "--dtype auto picks" in out and "fp32" in out and "ms/token" in out
