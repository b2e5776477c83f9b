"""``llmtts eval tts --speaker/--speakers``: a two-speaker model judged per speaker (a real export, random
weights: the audio is noise, but the speaker token reaches the prompt and every code path runs)."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from llmtts.cli import main
from llmtts.errors import UserError
from llmtts.eval.report import section_tts
from llmtts.eval.tts_eval import resolve_speakers, speaker_dirs
from llmtts.eval.wer import cer, wer

SPEAKERS = ("en+m3", "en-us+f3")  # names as the built-in two-voice eSpeak corpus writes them
TEXTS = {"a1": "The quick brown fox.", "b2": "Good morning to you."}


@pytest.fixture(scope="module")
def two_speaker_model(tmp_path_factory):
    from infer_helpers import tiny_decoder_cfg, tiny_llm

    from llmtts.decoder.export import save_decoder
    from llmtts.decoder.model import HiddenDecoder
    from llmtts.llm.export import save_export

    root = tmp_path_factory.mktemp("two_speaker")
    model, vocab, frontend = tiny_llm(speakers=SPEAKERS)
    save_export(model, vocab, frontend, root / "llm" / "export")
    torch.manual_seed(1)
    save_decoder(HiddenDecoder(tiny_decoder_cfg()), root / "dec" / "export")
    texts = root / "metadata.csv"
    texts.write_text("".join(f"{k}|{t}\n" for k, t in TEXTS.items()))
    return root / "llm", root / "dec", texts


def _eval(model, out, *flags):
    llm, dec, texts = model
    return main(["eval", "tts", "--llm-path", str(llm), "--decoder-path", str(dec), "--texts", str(texts),
                 "--out", str(out), "--seed", "0", "--max-tokens", "16", *flags])


def test_every_speaker_is_judged_on_every_text(two_speaker_model, judge, tmp_path, capsys):
    assert _eval(two_speaker_model, tmp_path / "ev", "--speakers", "all") == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[0])["sets"]["eval"]
    data = json.loads((tmp_path / "ev" / "tts_eval.json").read_text())
    assert data["speakers"] == list(SPEAKERS)
    s = data["sets"]["eval"]
    assert list(s["speakers"]) == list(SPEAKERS) == list(printed["speakers"])
    assert s["num_utterances"] == 2 * len(TEXTS)
    rows = data["utterances"]
    assert sorted((u["id"], u["speaker"]) for u in rows) == sorted((k, v) for k in TEXTS for v in SPEAKERS)
    for spk, v in s["speakers"].items():
        mine = [u for u in rows if u["speaker"] == spk]
        assert v["num_utterances"] == len(mine) == len(TEXTS) and v["synth_dir"] == f"eval/synth/{spk}"
        # the speaker's WER/CER are its own rows' corpus-level rates, not the pooled ones
        assert v["wer"] == pytest.approx(wer([u["text"] for u in mine], [u["hypothesis"] for u in mine]))
        assert v["cer"] == pytest.approx(cer([u["text"] for u in mine], [u["hypothesis"] for u in mine]))
        assert all(u["wav"] == f"eval/synth/{spk}/{u['id']}.wav" for u in mine)
    assert s["wer"] == pytest.approx(wer([u["text"] for u in rows], [u["hypothesis"] for u in rows]))
    # each text said by each speaker: the speaker token changes the audio
    for uid in TEXTS:
        a, b = (sf.read(tmp_path / "ev" / "eval" / "synth" / spk / f"{uid}.wav", dtype="float32")[0]
                for spk in SPEAKERS)
        n = min(a.size, b.size)
        assert a.size != b.size or float(np.abs(a[:n] - b[:n]).max()) > 1e-3 * float(np.abs(a).max())
    # the run report's TTS section: a per-speaker table with both voices and the overall row
    page = section_tts(tmp_path, [tmp_path / "ev" / "tts_eval.json"])
    assert "<h4>per speaker</h4>" in page
    for spk in (*SPEAKERS, "all speakers"):
        assert f"<td>eval</td><td>{spk}</td>" in page


def test_named_speaker_only_and_unknown_is_one_line(two_speaker_model, judge, tmp_path, capsys):
    assert _eval(two_speaker_model, tmp_path / "one", "--speaker", "en-us+f3") == 0
    data = json.loads((tmp_path / "one" / "tts_eval.json").read_text())
    assert list(data["sets"]["eval"]["speakers"]) == ["en-us+f3"]
    assert {u["speaker"] for u in data["utterances"]} == {"en-us+f3"}
    capsys.readouterr()
    assert _eval(two_speaker_model, tmp_path / "bad", "--speaker", "joe") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["llmtts: error: unknown speaker 'joe'; this model's speakers: en+m3, en-us+f3"]
    assert not (tmp_path / "bad" / "tts_eval.json").exists()


def test_resolve_speakers_rules():
    both = list(SPEAKERS)
    assert resolve_speakers([], None, both) is None  # no flag: the default voice, no breakdown
    assert resolve_speakers([], "all", both) == both
    assert resolve_speakers([], "auto", both) == both
    assert resolve_speakers([], "auto", ["joe"]) is None and resolve_speakers([], "auto", []) is None
    assert resolve_speakers(["en-us+f3", "en+m3"], None, both) == ["en-us+f3", "en+m3"]  # the order given
    for named, mode, avail, msg in ((["en+m3"], "all", both, "not both"), ([], "every", both, "'all' or 'auto'"),
                                    ([], "all", [], "single-speaker"), (["en+m3", "en+m3"], None, both, "twice"),
                                    (["x"], None, [], "speakers: none")):
        with pytest.raises(UserError, match=msg):
            resolve_speakers(named, mode, avail)


def test_speaker_dirs_stay_inside_and_distinct():
    assert speaker_dirs(["en-us+f3", "../up", "a/b", "a_b"]) == {
        "en-us+f3": "en-us+f3", "../up": "___up", "a/b": "a_b", "a_b": "a_b_"}


def test_auto_on_a_single_speaker_model_is_the_plain_evaluation(tiny_exports, two_speaker_model, judge, tmp_path,
                                                                 capsys):
    llm, dec = tiny_exports  # no speaker table: what the pipeline's --speakers auto meets on most recipes
    texts = two_speaker_model[2]
    assert _eval((llm, dec, texts), tmp_path / "ev", "--speakers", "auto", "--max-utterances", "1") == 0
    data = json.loads((tmp_path / "ev" / "tts_eval.json").read_text())
    assert data["speakers"] == [] and "speakers" not in data["sets"]["eval"]
    assert [(u["speaker"], u["wav"]) for u in data["utterances"]] == [(None, "eval/synth/a1.wav")]
    capsys.readouterr()
    assert _eval((llm, dec, texts), tmp_path / "all", "--speakers", "all") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--speakers all: this model has no speakers" in err[0]


def test_each_speaker_reads_against_the_ceiling_of_its_own_references(piper_synth_class, piper_refs, judge,
                                                                      tmp_path):
    # two "speakers" of a real engine (Piper at two speaking rates); the corpus' speakers.csv says who recorded
    # each reference, as `llmtts data corpus` writes it
    import shutil

    from llmtts.eval.sets import load_sets
    from llmtts.eval.tts_eval import evaluate_sets

    refs = tmp_path / "refs"
    shutil.copytree(piper_refs, refs)
    (refs / "speakers.csv").write_text("ref_0000|slow\nref_0001|fast\n")
    engines = {"slow": piper_synth_class(length_scale=1.4), "fast": piper_synth_class(length_scale=0.8)}

    def synth(text, speaker=None):
        return engines[speaker](text)

    sets = load_sets([f"refs={refs}"], tmp_path / "ev")
    data = evaluate_sets(lambda s: synth, sets, judge, tmp_path / "ev", speakers=["slow", "fast"])
    s, rows = data["sets"]["refs"], data["utterances"]
    assert s["num_utterances"] == 4 and s["num_references"] == 2  # each reference scored once, not per speaker
    for spk, uid in (("slow", "ref_0000"), ("fast", "ref_0001")):
        v = s["speakers"][spk]
        own = [u for u in rows if u["id"] == uid]
        assert v["num_references"] == 1 and v["ref_wer"] == own[0]["ref_wer"] == own[1]["ref_wer"]
    for uid in ("ref_0000", "ref_0001"):  # the speaker reached the engine: slow is longer than fast
        dur = {u["speaker"]: u["duration_s"] for u in rows if u["id"] == uid}
        assert dur["slow"] > 1.3 * dur["fast"]
