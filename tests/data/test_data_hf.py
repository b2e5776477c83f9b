"""``data shards --format hf``: Hugging Face datasets saved with ``save_to_disk`` (built here with the real
``datasets`` package), ingested with the network blocked, through to real shards."""
import io
import json
import socket
import tarfile

import numpy as np
import pytest
import soundfile as sf

from llmtts.cli import main
from llmtts.data.sources import read_source
from llmtts.errors import UserError

datasets = pytest.importorskip("datasets")
SR = 16000


def _tone(seconds, freq, sr=SR, channels=1, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    mono = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def _encoded(wav, sr, fmt):
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format=fmt)
    return buf.getvalue()


@pytest.fixture
def no_network(monkeypatch):
    """Any outgoing connection fails the test: the reader must work on an offline machine."""
    def refuse(self, address):
        raise AssertionError(f"network access attempted: {address}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def _save_dict(root, tmp_path):
    """A DatasetDict like a Hub speech dataset: train (a wav file, FLAC bytes, 44.1 kHz stereo WAV bytes, a silent
    clip) and test (one row). Columns audio / text / speaker_id / id."""
    wav_file = tmp_path / "src" / "a.wav"
    wav_file.parent.mkdir(parents=True)
    sf.write(wav_file, _tone(1.0, 220), SR)
    # Cells as the Arrow storage holds them ({bytes, path}): building from arrays would need torchcodec.
    train = datasets.Dataset.from_dict({
        "audio": [{"bytes": None, "path": str(wav_file)}, {"bytes": _encoded(_tone(0.8, 330), SR, "FLAC"), "path": "b.flac"},
                  {"bytes": _encoded(_tone(0.6, 440, 44100, 2), 44100, "WAV"), "path": "c.wav"},
                  {"bytes": _encoded(np.zeros(SR, np.float32), SR, "WAV"), "path": "d.wav"}],
        "text": ["Hello there.", "It costs $5.", "third one", "silence"],
        "speaker_id": ["alice", "bob", "alice", "bob"],
        "id": ["u1", "u2", "u3", "u4"]}).cast_column("audio", datasets.Audio())
    test = datasets.Dataset.from_dict({
        "audio": [{"bytes": _encoded(_tone(0.7, 262), SR, "WAV"), "path": "t.wav"}],
        "text": ["from the test split"], "speaker_id": ["carol"], "id": ["u1"]}).cast_column("audio", datasets.Audio())
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(root))
    wav_file.unlink()  # save_to_disk embedded the bytes: the original file is not needed any more


def _samples(shard_dir):
    index = json.loads((shard_dir / "index.json").read_text())
    out = {}
    for s in index["shards"]:
        with tarfile.open(shard_dir / s["path"]) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if name.endswith(".json"):
                key = name[:-5]
                out[key] = (json.loads(data), sf.read(io.BytesIO(members[key + ".flac"]), dtype="float32")[0])
    return index, out


def test_hf_dataset_dict_to_shards_offline(tmp_path, no_network):
    root = tmp_path / "my_hf"
    _save_dict(root, tmp_path)
    utts, rejects = read_source(root, "hf")
    assert not rejects
    assert {u.key: (u.text, u.speaker, u.source) for u in utts} == {
        "train_u1": ("Hello there.", "alice", "train/0"), "train_u2": ("It costs $5.", "bob", "train/1"),
        "train_u3": ("third one", "alice", "train/2"), "train_u4": ("silence", "bob", "train/3"),
        "test_u1": ("from the test split", "carol", "test/0")}

    out = tmp_path / "shards"
    # two worker processes, one row per shard: each worker opens the dataset itself
    assert main(["data", "shards", "--input-dir", str(root), "--format", "hf", "--out", str(out), "--workers", "2",
                 "--samples-per-shard", "1", "--val-fraction", "0", "--sample-rate", str(SR), "--no-progress"]) == 0
    index, samples = _samples(out)
    assert set(samples) == {"train_u1", "train_u2", "train_u3", "test_u1"}
    assert index["rejected"] == {"silent": 1}
    assert {k: v["num_samples"] for k, v in index["speakers"].items()} == {"alice": 2, "bob": 1, "carol": 1}
    assert samples["train_u2"][0]["normalized_text"] == "it costs five dollars."
    # The audio is the stored audio: same length at the same rate, same samples within 16-bit rounding.
    for key, (seconds, freq) in {"train_u1": (1.0, 220), "train_u2": (0.8, 330), "test_u1": (0.7, 262)}.items():
        np.testing.assert_allclose(samples[key][1], _tone(seconds, freq), atol=2e-4)
    # 44.1 kHz stereo -> 16 kHz mono with the same duration and pitch
    wav = samples["train_u3"][1]
    assert abs(len(wav) - int(0.6 * SR)) <= 2
    assert abs(np.argmax(np.abs(np.fft.rfft(wav))) * SR / len(wav) - 440) < 5


def test_hf_single_dataset_without_ids_or_speakers(tmp_path, no_network):
    root = tmp_path / "plain"
    datasets.Dataset.from_dict({"sentence": ["one", "two"], "audio": [
        {"bytes": _encoded(_tone(0.5, 200), SR, "FLAC"), "path": None},
        {"bytes": b"not audio at all", "path": "x.wav"}]}).cast_column("audio", datasets.Audio()).save_to_disk(str(root))
    out = tmp_path / "shards"
    assert main(["data", "shards", "--input-dir", str(root), "--format", "hf", "--out", str(out),
                 "--val-fraction", "0", "--sample-rate", str(SR), "--no-progress"]) == 0
    index, samples = _samples(out)
    assert list(samples) == ["row_0000000"] and samples["row_0000000"][0]["speaker"] == "plain"
    assert index["rejected"] == {"unreadable_audio": 1}


def test_hf_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "notads").mkdir()
    with pytest.raises(UserError, match="not a Hugging Face dataset saved with save_to_disk"):
        read_source(tmp_path / "notads", "hf")
    no_audio = tmp_path / "noaudio"
    datasets.Dataset.from_dict({"text": ["a"], "file": ["x.wav"]}).save_to_disk(str(no_audio))
    capsys.readouterr()  # save_to_disk's own progress bar
    assert main(["data", "shards", "--input-dir", str(no_audio), "--format", "hf", "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no Audio column (columns: text, file)" in err and "\n" not in err
    no_text = tmp_path / "notext"
    datasets.Dataset.from_dict({"words": ["a"], "audio": [{"bytes": _encoded(_tone(0.5, 200), SR, "WAV"), "path": None}]}
                               ).cast_column("audio", datasets.Audio()).save_to_disk(str(no_text))
    with pytest.raises(UserError, match="no transcript column .*columns: words, audio"):
        read_source(no_text, "hf")
