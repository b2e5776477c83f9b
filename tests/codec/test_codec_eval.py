"""``llmtts eval codec``: metrics on an LJSpeech folder and on shards, report files, metric sanity."""
import json

import numpy as np
import pytest

from llmtts.cli import main as cli_main
from llmtts.codec.evaluate import evaluate_codec, si_sdr

from shared_data import LJSPEECH_MINI as LJ


def test_si_sdr_behaviour():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000)
    assert si_sdr(x, 0.5 * x) > 100  # scale-invariant: a scaled copy is perfect
    assert si_sdr(x, x + 0.1 * rng.standard_normal(16000)) == pytest.approx(20, abs=0.5)
    assert si_sdr(x, x + rng.standard_normal(16000)) == pytest.approx(0, abs=0.5)


@pytest.mark.skipif(not LJ.is_dir(), reason=f"needs the LJSpeech sample at {LJ} (or LLMTTS_LJSPEECH_MINI)")
def test_eval_on_ljspeech_dir_via_cli(codec_dir, tmp_path, capsys):
    out = tmp_path / "report"
    rc = cli_main(["eval", "codec", "--codec-path", str(codec_dir.parent), "--input-dir", str(LJ), "--out", str(out),
                   "--limit", "2", "--num-plots", "1", "--save-audio", "1"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "codec_eval.json").read_text())
    s = report["summary"]
    assert s == printed and s["num_clips"] == 2
    for m in ("pesq_wb", "stoi", "si_sdr", "mel_distance"):
        assert np.isfinite(s[m]), m
    assert 1.0 <= s["pesq_wb"] <= 4.7 and -1.0 <= s["stoi"] <= 1.0 and s["mel_distance"] > 0
    assert s["bitrate_bps"] == pytest.approx(15.625 * np.log2(1000))
    assert 0 < s["code_use"] <= 1 and s["perplexity"] >= 1
    rows = [json.loads(line) for line in (out / "per_clip.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["LJ001-0001", "LJ001-0002"]
    assert all(r["n_tokens"] == int(np.ceil(r["seconds"] * 16000 / 1024 - 1e-9)) for r in rows)
    assert [p.name for p in (out / "spectrograms").glob("*.png")] == ["LJ001-0001.png"]
    assert (out / "audio" / "LJ001-0001.wav").is_file()


def test_eval_on_shards_counts_corrupt_clips(codec_dir, tmp_path):
    from codec_shards_helper import write_audio_shards

    shards = write_audio_shards(tmp_path / "audio", {"val": [3]}, corrupt={"utt0002"})
    report = evaluate_codec(codec_dir, shards, tmp_path / "r", num_plots=0)
    assert report["summary"]["num_clips"] == 2 and report["summary"]["skipped"] == {"bad_flac": 1}


def test_eval_bad_input_dir_is_a_user_error(codec_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = cli_main(["eval", "codec", "--codec-path", str(codec_dir), "--input-dir", str(tmp_path / "empty")])
    assert rc == 2 and "no audio files" in capsys.readouterr().err


def test_eval_out_that_is_a_file_is_a_one_line_error(codec_dir, audio_shards, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    rc = cli_main(["eval", "codec", "--codec-path", str(codec_dir), "--input-dir", str(audio_shards),
                   "--out", str(tmp_path / "file")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("llmtts: error: --out") and "\n" not in err
    assert (tmp_path / "file").read_text() == "mine"
