import json
import re
import shutil

import pytest

from llmtts.cli import main
from llmtts.errors import UserError
from llmtts.eval.report import read_metrics, render_report
from llmtts.eval.tts_eval import evaluate_tts, file_synthesizer, read_texts


def _metrics(path, n, keys, val_every=5):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(1, n + 1):
        lines.append(json.dumps({"step": step, "split": "train", "time": 1.0 + step,
                                 **{k: 10.0 / step + i for i, k in enumerate(keys)}, "lr": 1e-3}))
        if step % val_every == 0:
            lines.append(json.dumps({"step": step, "split": "val", "time": 1.0 + step, keys[0]: 12.0 / step}))
    path.write_text("\n".join(lines) + '\n{"step": 99, "split": "tr')  # torn last line: killed mid-write


def test_read_metrics_skips_torn_and_junk_lines(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 1, "split": "train", "loss": 2.0}\nnot json\n\n{"split": "train"}\n{"step": 2, "lo')
    assert read_metrics(p) == [{"step": 1, "split": "train", "loss": 2.0}]


class ScriptedJudge:
    """The report renders what the judge heard; which judge does not matter here (the real Whisper judge and
    Piper speech are tested in test_tts_eval.py), so this one hears the same words every time."""

    model_dir = "scripted-judge"

    def transcribe(self, wav, sample_rate):
        return "the quick brown fox jumps over the dog"


class IdentityCodec:
    """A "codec" whose reconstruction is the reference itself (the ladder's ``ReferenceCodec`` interface)."""

    def encode(self, wav, sr):
        return (wav, sr), wav.size

    def decode(self, codes, n_samples):
        return codes


def tone_refs(root):
    """An LJSpeech-layout directory of two short tones (real wav files the report embeds and draws)."""
    import numpy as np

    from llmtts.audio import save_wav

    rows = []
    for i, text in enumerate(["The quick brown fox jumps over the lazy dog.", "Please call Stella."]):
        t = np.arange(16000 * (i + 1) // 2) / 16000
        save_wav(root / "wavs" / f"ref_{i:04d}.wav", (0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t)).astype("float32"),
                 16000)
        rows.append(f"ref_{i:04d}|{text}|{text.lower()}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def test_report_has_every_section_with_embedded_media(tmp_path):
    run = tmp_path / "run"
    refs = tone_refs(tmp_path / "refs")
    _metrics(run / "codec" / "metrics.jsonl", 20, ["loss", "mel_loss", "codebook_usage"])
    _metrics(run / "llm" / "metrics.jsonl", 12, ["loss", "audio_acc"])
    _metrics(run / "decoder_gan" / "metrics.jsonl", 8, ["loss_gen", "loss_disc"])
    (run / "codec" / "checkpoints" / "step_1").mkdir(parents=True)  # ignored: never a stage
    (run / "eval" / "codec").mkdir(parents=True)
    (run / "eval" / "codec" / "codec_eval.json").write_text(json.dumps(
        {"summary": {"pesq_wb": 1.234, "stoi": 0.567}, "clips": [{"pesq_wb": 1.0}] * 3}))
    (run / "pipeline.json").write_text(json.dumps(
        {"steps": [{"name": "corpus", "status": "done", "wall_s": 3.5, "log": "logs/corpus.log"}]}))
    tts_dir = run / "eval" / "tts"
    # an identity "codec": the reference itself as its reconstruction; one is then lost (the page says so)
    evaluate_tts(file_synthesizer(refs), read_texts(refs / "metadata.csv"), ScriptedJudge(), tts_dir,
                 reference_dir=refs, reconstruct=IdentityCodec())
    (tts_dir / "eval" / "codec" / "ref_0001.wav").unlink()
    (run / "synth").mkdir()
    shutil.copy(refs / "wavs" / "ref_0001.wav", run / "synth" / "sample.wav")
    (run / "pipeline.yaml").write_text("run_root: <run>\n")

    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    for sec in ("pipeline", "curves", "codec", "tts", "audio", "spectrograms"):
        assert f'<section id="{sec}">' in page
    for stage in ("codec", "llm", "decoder_gan"):
        assert f"<h3>{stage}</h3>" in page
    assert "checkpoints" not in page
    assert "summary.pesq_wb" in page and "1.234" in page and "mel_loss" in page
    assert "logs/corpus.log" in page and "run_root: &lt;run&gt;" in page and "synth/sample.wav" in page
    # 3 curve figures + one spectrogram row per utterance (2), all embedded
    imgs = re.findall(r'<img src="([^"]*)"', page)
    assert len(imgs) == 5 and all(s.startswith("data:image/png;base64,") for s in imgs)
    audios = re.findall(r'<audio [^>]*src="([^"]*)"', page)
    # the pipeline's sample; per-sentence rows: synth and ref of both utterances; the audio section: the same
    # plus the codec reconstruction that is still there
    assert len(audios) == 1 + 4 + 5 and all(s.startswith("data:audio/wav;base64,") for s in audios)
    assert page.count("<em>not available</em>") == 1
    wer_cell = f"{json.loads((tts_dir / 'tts_eval.json').read_text())['sets']['eval']['wer']:.4g}"
    assert f"<tr><td>WER</td><td>{wer_cell}</td></tr>" in page


def test_report_reads_version_1_tts_eval(tmp_path):
    # tts_eval.json written before evaluation sets existed: one unnamed set with a top-level summary
    ev = tmp_path / "eval" / "tts"
    ev.mkdir(parents=True)
    (ev / "tts_eval.json").write_text(json.dumps({
        "summary": {"num_utterances": 1, "wer": 0.25, "ref_wer": 0.125, "asr_model": "m"},
        "utterances": [{"id": "u1", "text": "Hello there.", "hypothesis": "hello", "wer": 0.25, "cer": 0.1,
                        "duration_s": 1.0, "wav": "synth/u1.wav"}]}))
    page = render_report(tmp_path)
    assert "<tr><th></th><th>eval</th></tr>" in page and "<td>0.125</td>" in page
    assert "<td>Hello there.</td>" in page and "<em>missing</em>" in page  # the wav is gone, the row stays


def test_report_on_empty_run_says_what_is_missing(tmp_path):
    page = render_report(tmp_path)
    assert "No training runs found" in page and "No TTS evaluation found" in page
    assert "No codec evaluation found" in page and "<img" not in page


def test_report_missing_dir_is_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        render_report(tmp_path / "nope")


def test_report_survives_half_written_json(tmp_path):
    (tmp_path / "eval" / "tts").mkdir(parents=True)
    (tmp_path / "eval" / "tts" / "tts_eval.json").write_text('{"summary": {"wer": 0.')
    (tmp_path / "pipeline.json").write_text("{")
    page = render_report(tmp_path)
    assert "eval/tts/tts_eval.json: unreadable" in page and "pipeline.json is unreadable" in page
