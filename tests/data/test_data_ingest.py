import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from llmtts.cli import main
from llmtts.data.ingest import IngestConfig, ingest

from shared_data import LJSPEECH_MINI as LJ_MINI


def tone(seconds, sr=16000, amp=0.3):
    n = int(seconds * sr)
    return (amp * np.sin(2 * np.pi * 220 * np.arange(n) / sr)).astype(np.float32)


def write_wav(path, wav, sr=16000, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, sr, format=fmt, subtype="PCM_16")


def truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def read_shards(out):
    """Every sample of every shard, read back with plain tarfile + soundfile."""
    samples = {}
    for tar in sorted(Path(out).glob("*/*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                key, ext = m.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return samples


@pytest.fixture
def ljspeech(tmp_path):
    root = tmp_path / "lj"
    rows = []
    for i in range(6):
        write_wav(root / "wavs" / f"LJ-{i}.wav", tone(0.5 + 0.1 * i))
        rows.append(f"LJ-{i}|Text number {i}.|Text number {i}.")
    write_wav(root / "wavs" / "empty.wav", tone(0.6))
    rows.append("empty| |")
    (root / "wavs" / "zero.wav").write_bytes(b"")
    rows.append("zero|Zero bytes.|Zero bytes.")
    write_wav(root / "wavs" / "cut.wav", tone(1.0))
    truncate(root / "wavs" / "cut.wav")
    rows.append("cut|Cut off.|Cut off.")
    write_wav(root / "wavs" / "quiet.wav", np.zeros(16000, np.float32))
    rows.append("quiet|Silence.|Silence.")
    write_wav(root / "wavs" / "short.wav", tone(0.1))
    rows.append("short|Short.|Short.")
    rows.append("gone|No file.|No file.")
    rows.append("|")  # broken line
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def test_ljspeech_with_broken_files_exact_counts(ljspeech, tmp_path):
    out = tmp_path / "s"
    index = ingest(ljspeech, "ljspeech", out, IngestConfig(sample_rate=24000, samples_per_shard=4, val_fraction=0.2),
                   progress=False)
    assert index["totals"]["num_samples"] == 6
    assert index["rejected"] == {"bad_metadata": 1, "empty_text": 1, "missing_audio": 1, "silent": 1,
                                 "too_short": 1, "truncated_audio": 1, "unreadable_audio": 1}
    assert index["num_inputs"] == 6 + 7
    assert index["splits"]["val"]["num_samples"] == 1 and index["splits"]["train"]["num_samples"] == 5
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rejects if r["reason"] != "bad_metadata") == \
        ["cut", "empty", "gone", "quiet", "short", "zero"]
    samples = read_shards(out)
    assert sorted(samples) == [f"LJ-{i}" for i in range(6)]
    for key, s in samples.items():
        wav, sr = sf.read(io.BytesIO(s["flac"]))
        meta = json.loads(s["json"])
        i = int(key.split("-")[1])
        assert sr == 24000 and wav.ndim == 1 and abs(len(wav) / sr - (0.5 + 0.1 * i)) < 0.01
        assert meta["text"] == f"Text number {i}." and meta["normalized_text"] == f"text number {['zero', 'one', 'two', 'three', 'four', 'five'][i]}."
        assert meta["speaker"] == "lj" and meta["sample_rate"] == 24000 and meta["source"] == f"wavs/LJ-{i}.wav"
    assert abs(index["totals"]["seconds"] - sum(0.5 + 0.1 * i for i in range(6))) < 0.01


def test_ingestion_is_deterministic_and_independent_of_workers(ljspeech, tmp_path):
    def run(name, workers):
        ingest(ljspeech, "ljspeech", tmp_path / name, IngestConfig(samples_per_shard=2, workers=workers, seed=5),
               progress=False)
        return {p.relative_to(tmp_path / name).as_posix(): p.read_bytes()
                for p in sorted((tmp_path / name).rglob("*")) if p.is_file() and p.name != "index.json"}
    a, b = run("a", 1), run("b", 2)
    assert a == b and len(a) >= 4
    # Another seed: same samples, different split / shard order.
    ingest(ljspeech, "ljspeech", tmp_path / "c", IngestConfig(samples_per_shard=2, seed=6), progress=False)
    def layout(name):
        return [sorted(k.split(".")[0] for k in tarfile.open(p).getnames())
                for p in sorted((tmp_path / name).glob("*/*.tar"))]
    assert sorted(sum(layout("a"), [])) == sorted(sum(layout("c"), []))
    assert layout("a") != layout("c")


def test_libritts_tree(tmp_path):
    root = tmp_path / "LibriTTS" / "train-clean-100"
    for spk, chap, utt in [(19, 198, 0), (19, 198, 1), (26, 495, 0)]:
        stem = f"{spk}_{chap}_{utt:06d}_000000"
        d = root / str(spk) / str(chap)
        write_wav(d / f"{stem}.wav", tone(0.8))
        (d / f"{stem}.normalized.txt").write_text(f"Chapter {chap}, part {utt}.")
        (d / f"{stem}.original.txt").write_text(f"Chapter {chap}, part {utt}.")
    write_wav(root / "26" / "495" / "26_495_000009_000000.wav", tone(0.8))  # no transcript
    write_wav(root / "26" / "495" / "26_495_000010_000000.wav", tone(0.8))
    (root / "26" / "495" / "26_495_000010_000000.normalized.txt").write_text("   ")  # empty text
    index = ingest(tmp_path / "LibriTTS", "libritts", tmp_path / "s", IngestConfig(val_fraction=0.0), progress=False)
    assert index["totals"]["num_samples"] == 3
    assert index["speakers"]["19"]["num_samples"] == 2 and index["speakers"]["26"]["num_samples"] == 1
    assert index["rejected"] == {"empty_text": 1, "missing_text": 1}
    meta = json.loads(read_shards(tmp_path / "s")["19_198_000001_000000"]["json"])
    assert meta["normalized_text"] == "chapter one hundred ninety-eight, part one."


def test_manifest_with_truncated_flac(tmp_path):
    root = tmp_path / "m"
    write_wav(root / "audio" / "a.flac", tone(0.7, 22050), 22050, "FLAC")
    write_wav(root / "audio" / "b.flac", tone(3.0, 22050), 22050, "FLAC")
    truncate(root / "audio" / "b.flac")
    write_wav(root / "c.wav", tone(0.9))
    lines = [json.dumps({"audio": "audio/a.flac", "text": "Hello.", "speaker": "ann"}),
             json.dumps({"audio": "audio/b.flac", "text": "Broken.", "speaker": "bob"}),
             json.dumps({"audio": str(root / "c.wav"), "text": "Absolute path.", "speaker": "bob", "id": "c"}),
             "{not json"]
    (root / "data.jsonl").write_text("\n".join(lines) + "\n")
    index = ingest(root / "data.jsonl", "manifest", tmp_path / "s", IngestConfig(sample_rate=16000, val_fraction=0),
                   progress=False)
    assert index["totals"]["num_samples"] == 2
    assert index["rejected"] == {"bad_manifest_line": 1, "truncated_audio": 1}
    samples = read_shards(tmp_path / "s")
    assert sorted(samples) == ["audio_a", "c"]
    assert json.loads(samples["audio_a"]["json"])["speaker"] == "ann"


def test_cli_and_bad_input_errors(tmp_path, capsys):
    assert main(["data", "shards", "--input-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "input not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["data", "shards", "--input-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no metadata.csv" in capsys.readouterr().err


@pytest.mark.skipif(not LJ_MINI.is_dir(), reason=f"real LJSpeech sample not present at {LJ_MINI}")
def test_real_ljspeech_mini(tmp_path):
    out = tmp_path / "s"
    rc = main(["data", "shards", "--input-dir", str(LJ_MINI), "--format", "ljspeech", "--out", str(out),
               "--sample-rate", "24000", "--workers", "2", "--samples-per-shard", "10", "--no-progress"])
    assert rc == 0
    index = json.loads((out / "index.json").read_text())
    assert index["totals"]["num_samples"] + index["num_rejected"] == 32
    assert index["totals"]["num_samples"] >= 30
    assert 200 < index["totals"]["seconds"] < 240
    assert sum(s["num_samples"] for s in index["shards"]) == index["totals"]["num_samples"]
    samples = read_shards(out)
    key = sorted(samples)[0]
    wav, sr = sf.read(io.BytesIO(samples[key]["flac"]))
    assert sr == 24000 and wav.ndim == 1
    meta_line = next(line for line in (LJ_MINI / "metadata.csv").read_text().splitlines() if line.startswith(key + "|"))
    assert json.loads(samples[key]["json"])["text"] == meta_line.split("|")[1]


def test_non_utf8_bytes_cost_one_row_not_the_run(tmp_path):
    """A latin-1 byte in metadata.csv rejects that row (counted, listed); in speakers.csv it is decoded with
    U+FFFD (the speaker stays one consistent label); in a manifest it rejects that line."""
    root = tmp_path / "lj"
    for i in range(3):
        write_wav(root / "wavs" / f"u{i}.wav", tone(0.6))
    (root / "metadata.csv").write_bytes(b"u0|Fine text.|Fine text.\nu1|Caf\xe9 au lait.|Caf\xe9 au lait.\n"
                                        b"u2|Also fine.|Also fine.\n")
    (root / "speakers.csv").write_bytes(b"u0|ann\nu1|ann\nu2|Jos\xe9\n")
    assert main(["data", "shards", "--input-dir", str(root), "--out", str(tmp_path / "s"), "--sample-rate", "16000",
                 "--val-fraction", "0", "--no-progress"]) == 0
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    assert index["totals"]["num_samples"] == 2 and index["rejected"] == {"bad_metadata": 1}
    assert sorted(index["speakers"]) == ["Jos\ufffd", "ann"]
    rejects = [json.loads(line) for line in (tmp_path / "s" / "rejects.jsonl").read_text().splitlines()]
    assert [r["detail"] for r in rejects] == ["line 2: not UTF-8 text"]
    (root / "data.jsonl").write_bytes(b'{"audio": "wavs/u0.wav", "text": "Fine."}\n'
                                      b'{"audio": "wavs/u1.wav", "text": "Caf\xe9."}\n')
    index = ingest(root / "data.jsonl", "manifest", tmp_path / "m", IngestConfig(sample_rate=16000, val_fraction=0),
                   progress=False)
    assert index["totals"]["num_samples"] == 1 and index["rejected"] == {"bad_manifest_line": 1}
