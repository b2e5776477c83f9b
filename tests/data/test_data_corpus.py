import json

import numpy as np
import soundfile as sf

from llmtts.cli import main
from llmtts.data.corpus import build_corpus, load_hard_sentences, load_sentences, plan_corpus, select_sentences
from llmtts.data.voices import ESPEAK_VOICES, parse_voices


def files(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_sentence_set():
    sentences = load_sentences()
    assert len(set(sentences)) == len(sentences) >= 500
    assert sum("?" in s for s in sentences) >= 50
    assert sum(any(c.isdigit() for c in s) for s in sentences) >= 150
    assert sum("$" in s for s in sentences) >= 20


def test_plan_is_a_function_of_the_seed():
    a, b, c = plan_corpus(30, 1, ESPEAK_VOICES), plan_corpus(30, 1, ESPEAK_VOICES), plan_corpus(30, 2, ESPEAK_VOICES)
    assert a == b and a != c
    assert len({p["text"] for p in a}) == 30  # no repeats while sentences last
    assert len({p["speaker"] for p in a}) > 1
    many = plan_corpus(600, 0, ("x",))
    assert len(many) == 600


def test_heldout_sentences_never_in_train():
    train, held = set(select_sentences("train")), set(select_sentences("heldout"))
    assert len(train) >= 500 and len(held) >= 50 and not train & held
    assert train | held == set(load_sentences())
    assert {p["text"] for p in plan_corpus(40, 0, ("x",), "heldout")} <= held


def test_espeak_corpus_is_byte_identical_and_multi_speaker(tmp_path):
    info = build_corpus(tmp_path / "a", 8, voice="espeak", seed=3, progress=False)
    assert info["num_utterances"] == 8 and len(list((tmp_path / "a" / "wavs").glob("*.wav"))) == 8
    build_corpus(tmp_path / "b", 20, voice="espeak", seed=3, progress=False, workers=2)
    build_corpus(tmp_path / "a", 20, voice="espeak", seed=3, progress=False)  # more utterances, 1 worker
    fa, fb = files(tmp_path / "a"), files(tmp_path / "b")
    assert fa == fb
    assert len([k for k in fa if k.startswith("wavs/")]) == 20
    meta = (tmp_path / "a" / "metadata.csv").read_text().splitlines()
    assert len(meta) == 20 and all(len(line.split("|")) == 3 for line in meta)
    speakers = dict(line.split("|") for line in (tmp_path / "a" / "speakers.csv").read_text().splitlines())
    assert len(set(speakers.values())) > 1 and set(speakers.values()) <= set(ESPEAK_VOICES)
    wav, sr = sf.read(tmp_path / "a" / "wavs" / "utt_000001.wav")
    assert sr == info["sample_rate"] == 22050 and wav.ndim == 1 and 0.5 < len(wav) / sr < 15
    assert 0.85 < np.abs(wav).max() <= 0.91
    # Different seed, different corpus; same arguments again: kept as is.
    build_corpus(tmp_path / "c", 8, voice="espeak", seed=4, progress=False)
    assert files(tmp_path / "c")["metadata.csv"] != fa["metadata.csv"]
    mtime = (tmp_path / "a" / "corpus.json").stat().st_mtime_ns
    build_corpus(tmp_path / "a", 20, voice="espeak", seed=3, progress=False)
    assert (tmp_path / "a" / "corpus.json").stat().st_mtime_ns == mtime


def test_piper_corpus_via_cli(tmp_path):
    out = tmp_path / "p"
    assert main(["data", "corpus", "--out", str(out), "--num-utterances", "2", "--seed", "1", "--no-progress"]) == 0
    info = json.loads((out / "corpus.json").read_text())
    assert info["voice"] == "piper" and info["speakers"] == ["joe"] and info["num_utterances"] == 2
    wavs = sorted((out / "wavs").glob("*.wav"))
    assert len(wavs) == 2
    for w in wavs:
        wav, sr = sf.read(w)
        assert sr == 22050 and len(wav) / sr > 1.0 and np.abs(wav).max() > 0.5
    build_corpus(tmp_path / "again", 2, voice="piper", seed=1, progress=False)
    assert files(tmp_path / "again") == files(out)  # Piper renders byte-identically too
    # Smaller corpus in the same place: stale wavs go away.
    assert main(["data", "corpus", "--out", str(out), "--num-utterances", "1", "--voice", "espeak", "--no-progress"]) == 0
    assert len(list((out / "wavs").glob("*.wav"))) == 1
    assert len((out / "metadata.csv").read_text().splitlines()) == 1


def test_bad_voice_is_a_clear_error(tmp_path, capsys):
    for voice, msg in (("nope", "unknown voice 'nope'"), ("espeak:en-gb+f9", "voice 'espeak' has no speaker 'en-gb+f9' "
                       "(it has: en+m1"), ("espeak:en+m1,espeak", "names a speaker twice")):
        assert main(["data", "corpus", "--out", str(tmp_path / "x"), "--voice", voice]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["data", "corpus", "--out", str(tmp_path), "--num-utterances", "0"]) == 2
    assert "--num-utterances must be >= 1" in capsys.readouterr().err


def test_voice_lists():
    assert parse_voices("piper") == (("piper", "joe"),)
    assert parse_voices("espeak") == tuple(("espeak", v) for v in ESPEAK_VOICES)
    assert parse_voices("piper, espeak:en-us+f3") == (("piper", "joe"), ("espeak", "en-us+f3"))
    plan = plan_corpus(7, 0, ("joe", "en-us+f3"), all_speakers=True)
    assert [p["speaker"] for p in plan] == ["joe", "en-us+f3"] * 3 + ["joe"]
    assert [p["text"] for p in plan[0:2]] == [plan[0]["text"]] * 2 and len({p["text"] for p in plan}) == 4
    assert plan_corpus(7, 0, ("joe",)) == plan_corpus(7, 0, ("joe",), all_speakers=True)  # one speaker: same plan


def test_two_voice_corpus_says_each_sentence_in_both_voices(tmp_path, capsys):
    """Piper's joe and eSpeak's en-us+f3 in one corpus: speakers.csv and the shards' index name both, and the
    voices differ the way a male and a female voice do (F0 an octave apart, brighter spectrum)."""
    from llmtts.eval.voice_stats import voice_stats

    out = tmp_path / "two"
    assert main(["data", "corpus", "--out", str(out), "--num-utterances", "4", "--voice", "piper,espeak:en-us+f3",
                 "--all-speakers", "--seed", "2", "--workers", "2", "--no-progress"]) == 0
    assert "speakers en-us+f3, joe" in capsys.readouterr().out
    info = json.loads((out / "corpus.json").read_text())
    assert info["speakers"] == ["en-us+f3", "joe"] and info["all_speakers"] is True
    speakers = dict(line.split("|") for line in (out / "speakers.csv").read_text().splitlines())
    texts = [line.split("|")[1] for line in (out / "metadata.csv").read_text().splitlines()]
    assert list(speakers.values()) == ["joe", "en-us+f3"] * 2 and texts[0] == texts[1] and texts[2] == texts[3]
    stats = {uid: voice_stats(*sf.read(out / "wavs" / f"{uid}.wav")) for uid in speakers}
    for male, female in (("utt_000001", "utt_000002"), ("utt_000003", "utt_000004")):
        assert 80 < stats[male]["f0_mean"] < 140 and 170 < stats[female]["f0_mean"] < 260, stats
        assert stats[female]["centroid"] > stats[male]["centroid"] + 300, stats
    assert main(["data", "shards", "--input-dir", str(out), "--out", str(tmp_path / "shards"), "--val-fraction", "0",
                 "--sample-rate", "16000", "--no-progress"]) == 0
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert {k: v["num_samples"] for k, v in index["speakers"].items()} == {"joe": 2, "en-us+f3": 2}
    # Same arguments with one worker: byte-identical (the engines are picked per utterance, not per process).
    build_corpus(tmp_path / "one", 4, voice="piper,espeak:en-us+f3", seed=2, progress=False, all_speakers=True)
    assert files(tmp_path / "one") == files(out)


def test_hard_sentences_are_unseen_and_planned_with_their_category():
    hard = load_hard_sentences()
    cats = {c for c, _ in hard}
    assert cats == {"numbers", "names", "long"} and len(hard) == len({t for _, t in hard}) >= 30
    assert not {t.lower() for _, t in hard} & {s.lower() for s in load_sentences()}  # never a training sentence
    assert all(len(t.split()) >= 15 for c, t in hard if c == "long")
    plan = plan_corpus(9, 4, ("x",), "hard")
    assert plan == plan_corpus(9, 4, ("x",), "hard") and len({p["text"] for p in plan}) == 9
    texts = dict((t, c) for c, t in hard)
    assert all(p["id"].rsplit("_", 1)[0] == texts[p["text"]] for p in plan)  # the id carries the category
    assert [p["text"] for p in plan] == [t for _, t in hard if t in {p["text"] for p in plan}]  # file order
    gen = plan_corpus(300, 0, ("x",), "train", text_source="generated")
    assert not {p["text"] for p in gen} & set(texts)
