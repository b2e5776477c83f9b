"""``benchmarks/vs_soprano.py`` reports a format's speed only when the judge heard it as well as fp32."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from vs_soprano import judge_refusals  # noqa: E402


def summary(tmp_path, **wers) -> str:
    """quant_quality.py's summary.json: ``{dtype: {set: {"wer": ...}}}``."""
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({d: {s: {"wer": w} for s, w in sets.items()} for d, sets in wers.items()}))
    return str(path)


def test_a_format_heard_worse_than_fp32_is_not_reported(tmp_path):
    q = summary(tmp_path, fp32={"train": 0.05, "unseen": 0.20}, int8={"train": 0.06, "unseen": 0.21},
                int4={"train": 0.05, "unseen": 0.31})
    out = judge_refusals(q, 0.05, ["fp32", "int8", "int4", "bf16"])
    assert set(out) == {"int4", "bf16"}
    assert "0.110 (unseen)" in out["int4"] and "no judge WER for bf16" in out["bf16"]
    assert judge_refusals("", 0.05, ["int4"]) == {}  # no quality file: nothing to gate on


def test_sets_fp32_cannot_say_do_not_judge_a_format(tmp_path):
    q = summary(tmp_path, fp32={"train": 0.05, "unseen": 1.2}, int4={"train": 0.06, "unseen": 1.5})
    assert judge_refusals(q, 0.05, ["int4"]) == {}
    q = summary(tmp_path, fp32={"unseen": 1.2}, int4={"unseen": 1.2})
    assert "says intelligibly" in judge_refusals(q, 0.05, ["int4"])["int4"]
