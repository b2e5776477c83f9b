import json

import numpy as np
import pytest
import soundfile as sf

from llmtts.cli import main
from llmtts.errors import UserError
from llmtts.asr import resolve_asr_dir
from llmtts.eval.tts_eval import evaluate_tts, read_texts
from llmtts.eval.wer import wer



def test_judge_transcribes_piper_speech(judge, piper_refs, ref_texts):
    refs, hyps = [], []
    for uid, text in ref_texts.items():
        wav, sr = sf.read(piper_refs / "wavs" / f"{uid}.wav", dtype="float32")
        hyps.append(judge.transcribe(wav, sr))
        refs.append(text)
    assert wer(refs, hyps) < 0.3, hyps


def test_judge_on_silence_is_nearly_empty(judge):
    hyp = judge.transcribe(np.zeros(16000, dtype=np.float32), 16000)
    assert len(hyp.split()) <= 2


def test_evaluate_tts_with_references(judge, piper_refs, piper_synth_class, tmp_path):
    # A different speaking rate than the references, so synthesis and reference are distinct audio.
    synth = piper_synth_class(length_scale=1.2)
    utts = read_texts(piper_refs / "metadata.csv")
    report = evaluate_tts(synth, utts, judge, tmp_path, reference_dir=piper_refs)
    s = report["sets"]["eval"]
    assert s["num_utterances"] == 2 and s["num_references"] == 2
    assert s["wer"] < 0.3 and s["ref_wer"] < 0.3
    assert 0 <= s["cer"] <= s["wer"] + 0.2
    assert s["x_real_time"] > 1.0  # Piper is faster than real time
    assert s["max_length_share"] is None  # Piper does not report a guard
    saved = json.loads((tmp_path / "tts_eval.json").read_text())
    assert saved["sets"]["eval"]["wer"] == s["wer"]
    for u in saved["utterances"]:
        assert u["set"] == "eval" and u["wav"] == f"eval/synth/{u['id']}.wav"
        info = sf.info(tmp_path / u["wav"])
        assert info.samplerate == u["sample_rate"] == 22050
        assert info.frames / info.samplerate == pytest.approx(u["duration_s"], abs=1e-3)
        # slower speaking rate -> longer than the reference
        assert u["duration_s"] > u["ref_duration_s"]
        assert (tmp_path / u["ref_wav"]).is_file()


def test_read_texts_formats_and_errors(tmp_path):
    plain = tmp_path / "t.txt"
    plain.write_text("Hello there.\n\n  Second line  \n")
    assert [(u.id, u.text) for u in read_texts(plain)] == [("utt_0000", "Hello there."), ("utt_0001", "Second line")]
    meta = tmp_path / "metadata.csv"
    meta.write_text("a1|Hello, world.|hello world\nb2|Bye.\n")
    assert [(u.id, u.text) for u in read_texts(meta)] == [("a1", "Hello, world."), ("b2", "Bye.")]
    dup = tmp_path / "dup.csv"
    dup.write_text("a|x\na|y\n")
    for bad, msg in ((tmp_path / "missing.txt", "not found"), (dup, "duplicate")):
        with pytest.raises(UserError, match=msg):
            read_texts(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(UserError, match="no texts"):
        read_texts(empty)


def test_bad_asr_dir_is_one_line_error(tmp_path, capsys):
    with pytest.raises(UserError, match="model.bin"):
        resolve_asr_dir(tmp_path)
    texts = tmp_path / "t.txt"
    texts.write_text("hello\n")
    rc = main(["eval", "tts", "--llm-path", str(tmp_path), "--decoder-path", str(tmp_path), "--texts", str(texts),
               "--asr", str(tmp_path / "nope")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("llmtts: error:") and "nope" in err and "\n" not in err


def test_codec_reconstructions_saved_at_codec_rate(judge, piper_refs, piper_synth, tmp_path):
    import yaml

    from llmtts.codec.config import CodecModelConfig
    from llmtts.codec.export import export_codec
    from llmtts.codec.model import CodecModel
    from llmtts.eval.ladder import ReferenceCodec

    from pathlib import Path

    model_cfg = yaml.safe_load((Path(__file__).parents[2] / "configs/codec/tiny.yaml").read_text())["model"]
    export_codec(CodecModel(CodecModelConfig(**model_cfg)).eval(), tmp_path / "codec" / "export")
    rec = ReferenceCodec(str(tmp_path / "codec"))
    utts = read_texts(piper_refs / "metadata.csv")[:1]
    evaluate_tts(piper_synth, utts, judge, tmp_path / "ev", reference_dir=piper_refs, reconstruct=rec)
    out = sf.info(tmp_path / "ev" / "eval" / "codec" / f"{utts[0].id}.wav")
    ref = sf.info(piper_refs / "wavs" / f"{utts[0].id}.wav")
    assert out.samplerate == model_cfg["sample_rate"]
    assert out.frames == pytest.approx(ref.frames * model_cfg["sample_rate"] / ref.samplerate, abs=2)


def test_refused_text_scores_as_silence_not_a_crash(judge, piper_synth, tmp_path):
    from llmtts.eval.tts_eval import Utterance

    def synth(text):  # like llmtts.TTS: a text with nothing speakable is a UserError
        if not any(c.isalpha() for c in text):
            raise UserError("text has no speakable characters")
        return piper_synth(text)

    utts = [Utterance("ok", "Good morning to you."), Utterance("bad", "...")]
    s = evaluate_tts(synth, utts, judge, tmp_path)["sets"]["eval"]
    assert s["num_errors"] == 1 and s["empty_audio_share"] == 0.5
    assert s["wer"] < 0.3  # the refused text has no words after normalisation: it adds no reference words


def test_cli_scores_reference_audio_without_a_model(judge, piper_refs, tmp_path, capsys):
    # `llmtts eval tts --reference-dir DIR`: the judge on the references alone (its ceiling)
    assert main(["eval", "tts", "--reference-dir", str(piper_refs), "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[0])["sets"]["eval"]
    assert summary["num_utterances"] == 2 and summary["wer"] < 0.3 and summary["x_real_time"] is None
    # the references are the "synthesis": the model's WER is the ceiling, from one transcription each
    assert summary["wer"] == summary["ref_wer"]
    saved = json.loads((tmp_path / "tts_eval.json").read_text())
    assert [u["id"] for u in saved["utterances"]] == ["ref_0000", "ref_0001"]
    assert main(["eval", "tts", "--reference-dir", str(piper_refs), "--llm-path", str(tmp_path)]) == 2
    assert "go together" in capsys.readouterr().err


def test_hard_set_reports_wer_per_category(judge, tmp_path, capsys):
    """`data corpus --sentences hard` ids carry the category; `eval tts` on those references reports the
    corpus-level WER of each category beside the set's (here the judge on the references: the ceiling)."""

    refs = tmp_path / "hard"
    assert main(["data", "corpus", "--out", str(refs), "--num-utterances", "6", "--voice", "espeak",
                 "--sentences", "hard", "--seed", "1", "--no-progress"]) == 0
    assert main(["eval", "tts", "--reference-dir", str(refs), "--set-name", "hard", "--out", str(tmp_path / "e")]) == 0
    report = json.loads((tmp_path / "e" / "tts_eval.json").read_text())
    cats = report["sets"]["hard"]["categories"]
    rows = report["utterances"]
    assert set(cats) <= {"numbers", "names", "long"} and len(cats) >= 2
    assert sum(c["num_utterances"] for c in cats.values()) == len(rows) == 6
    for name, c in cats.items():
        mine = [r for r in rows if r["id"].startswith(name + "_")]
        assert c["wer"] == pytest.approx(wer([r["text"] for r in mine], [r["hypothesis"] for r in mine]))
    assert any(line.startswith("  WER hard ") for line in capsys.readouterr().out.splitlines())
