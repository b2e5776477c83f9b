"""``data shards --format folder`` and ``--format vctk`` on small trees built here, through to real shards."""
import io
import json
import tarfile

import numpy as np
import pytest
import soundfile as sf

from llmtts.cli import main
from llmtts.data.sources import read_source
from llmtts.errors import UserError

SR = 16000


def _tone(path, seconds=0.5, freq=220.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32), SR)


def _shard_samples(shard_dir):
    """{key: json} over every shard the index lists."""
    index = json.loads((shard_dir / "index.json").read_text())
    out = {}
    for s in index["shards"]:
        with tarfile.open(shard_dir / s["path"]) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    out[m.name[:-5]] = json.loads(tar.extractfile(m).read())
    return index, out


def test_folder_layout(tmp_path):
    root = tmp_path / "mydata"
    _tone(root / "alice" / "a1.wav")
    (root / "alice" / "a1.txt").write_text("Hello there.\n")
    _tone(root / "alice" / "a2.flac")
    (root / "alice" / "a2.lab").write_text("good morning")
    _tone(root / "bob" / "deep" / "b1.wav")
    (root / "bob" / "deep" / "b1.lab").write_text("from the lab file")
    (root / "bob" / "deep" / "b1.txt").write_text("from the txt file")  # .txt wins over .lab
    _tone(root / "top.wav")
    (root / "top.txt").write_text("a top level file")
    _tone(root / "bob" / "untranscribed.wav")
    (root / "bob" / "bad.txt").write_bytes(b"\xff\xfe bad")
    _tone(root / "bob" / "bad.wav")

    utts, rejects = read_source(root, "folder")
    got = {u.key: (u.text, u.speaker, u.source) for u in utts}
    assert got == {"alice_a1": ("Hello there.", "alice", "alice/a1.wav"),
                   "alice_a2": ("good morning", "alice", "alice/a2.flac"),
                   "bob_deep_b1": ("from the txt file", "deep", "bob/deep/b1.wav"),
                   "top": ("a top level file", "mydata", "top.wav")}
    assert sorted((r.key, r.reason) for r in rejects) == [("bob_bad", "bad_text"), ("bob_untranscribed", "missing_text")]

    out = tmp_path / "shards"
    assert main(["data", "shards", "--input-dir", str(root), "--format", "folder", "--out", str(out),
                 "--val-fraction", "0", "--sample-rate", "8000", "--no-progress"]) == 0
    index, samples = _shard_samples(out)
    assert index["rejected"] == {"bad_text": 1, "missing_text": 1}
    assert {k: (v["text"], v["speaker"], v["sample_rate"]) for k, v in samples.items()} == {
        k: (t, s, 8000) for k, (t, s, _) in got.items()}


def test_vctk_layout_prefers_mic1(tmp_path):
    root = tmp_path / "VCTK-Corpus-0.92"
    wavs = root / "wav48_silence_trimmed"
    for mic, freq in (("mic1", 220.0), ("mic2", 440.0)):
        _tone(wavs / "p225" / f"p225_001_{mic}.flac", freq=freq)
    _tone(wavs / "p226" / "p226_002_mic2.flac")  # only the second microphone
    _tone(wavs / "p315" / "p315_001_mic1.flac")  # VCTK's p315 has no transcripts
    (root / "txt" / "p225").mkdir(parents=True)
    (root / "txt" / "p226").mkdir(parents=True)
    (root / "txt" / "p225" / "p225_001.txt").write_text("Please call Stella.\n")
    (root / "txt" / "p226" / "p226_002.txt").write_text("Ask her to bring these things.\n")

    utts, rejects = read_source(root, "vctk")
    assert {u.key: (u.text, u.speaker, u.source) for u in utts} == {
        "p225_001": ("Please call Stella.", "p225", "wav48_silence_trimmed/p225/p225_001_mic1.flac"),
        "p226_002": ("Ask her to bring these things.", "p226", "wav48_silence_trimmed/p226/p226_002_mic2.flac")}
    assert [(r.key, r.reason) for r in rejects] == [("p315_001", "missing_text")]

    out = tmp_path / "shards"
    assert main(["data", "shards", "--input-dir", str(root), "--format", "vctk", "--out", str(out),
                 "--val-fraction", "0", "--sample-rate", "16000", "--no-progress"]) == 0
    index, samples = _shard_samples(out)
    assert set(samples) == {"p225_001", "p226_002"} and index["rejected"] == {"missing_text": 1}
    with tarfile.open(out / index["shards"][0]["path"]) as tar:
        flac = tar.extractfile("p225_001.flac").read()
    wav, _ = sf.read(io.BytesIO(flac))
    spectrum = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spectrum) * SR / len(wav) - 220.0) < 5  # the mic1 take, not mic2's 440 Hz


def test_vctk_0_80_wav_layout_and_errors(tmp_path):
    root = tmp_path / "VCTK-Corpus"
    _tone(root / "wav48" / "p225" / "p225_003.wav")
    (root / "txt" / "p225").mkdir(parents=True)
    (root / "txt" / "p225" / "p225_003.txt").write_text("Six spoons of fresh snow peas.")
    utts, rejects = read_source(root, "vctk")
    assert [(u.key, u.speaker) for u in utts] == [("p225_003", "p225")] and not rejects
    with pytest.raises(UserError, match="not a VCTK tree"):
        read_source(tmp_path / "VCTK-Corpus" / "txt", "vctk")
    with pytest.raises(UserError, match="no audio files"):
        read_source(root / "txt", "folder")


def test_a_latin1_speakers_csv_is_read_with_a_warning_naming_the_line(tmp_path, caplog):
    """A speakers.csv saved as latin-1: its UTF-8 lines keep their names, the others are still one consistent
    label each (U+FFFD for the bad bytes), and the user is told which line lost characters (it was silent)."""
    import logging

    from llmtts.data.sources import read_speakers

    f = tmp_path / "speakers.csv"
    f.write_bytes("a|Zoë\n".encode("utf-8") + "b|Zoë\n".encode("latin-1") + b"c|Bob\n")
    with caplog.at_level(logging.WARNING, logger="llmtts.data.sources"):
        got = read_speakers(f)
    assert got == {"a": "Zoë", "b": "Zo\ufffd", "c": "Bob"}
    assert any(str(f) in r.getMessage() and "line 2" in r.getMessage() for r in caplog.records)
