"""``llmtts synthesize`` as a hostile user runs it (issue 11): --speaker, --text-file written as it goes, output
paths and sampling values that used to be tracebacks. Real exports, real CLI calls."""
import os
import stat

import pytest
import soundfile as sf
import torch

from llmtts.cli import main
from llmtts.decoder.export import save_decoder
from llmtts.decoder.model import HiddenDecoder
from llmtts.errors import UserError
from llmtts.infer.cli import synthesize_to_files
from llmtts.llm.export import save_export

from infer_helpers import assert_within, fp16_flip_bound, generated, tiny_decoder_cfg, tiny_llm

TEXT = "Hello there, this is a test."


@pytest.fixture(scope="module")
def two_speakers(tmp_path_factory):
    root = tmp_path_factory.mktemp("spk")
    model, vocab, frontend = tiny_llm(speakers=("joe", "other"))
    save_export(model, vocab, frontend, root / "llm" / "export")
    torch.manual_seed(1)
    save_decoder(HiddenDecoder(tiny_decoder_cfg()), root / "dec" / "export")
    return ["--llm-path", str(root / "llm"), "--decoder-path", str(root / "dec")]


def _err_line(capsys):
    """The error: exactly one line on stderr (no traceback, no progress bar of model loading before it)."""
    err = capsys.readouterr().err.strip().splitlines()  # splitlines() also splits a progress bar's \r
    assert len(err) == 1 and err[0].startswith("llmtts: error: "), err
    return err[0]


def test_speaker_changes_the_audio_and_an_unknown_one_is_an_error(two_speakers, tmp_path, capsys):
    common = ["--text", TEXT, "--seed", "0", "--max-tokens", "12", *two_speakers]
    for name in ("joe", "other"):
        assert main(["synthesize", *common, "--speaker", name, "--out", str(tmp_path / f"{name}.wav")]) == 0
    assert main(["synthesize", *common, "--out", str(tmp_path / "default.wav")]) == 0
    joe, other = (tmp_path / "joe.wav").read_bytes(), (tmp_path / "other.wav").read_bytes()
    assert joe != other
    assert (tmp_path / "default.wav").read_bytes() == joe  # no --speaker: the model's first speaker
    capsys.readouterr()
    assert main(["synthesize", *common, "--speaker", "nobody", "--out", str(tmp_path / "n.wav")]) == 2
    err = _err_line(capsys)
    assert "'nobody'" in err and "joe, other" in err
    assert not (tmp_path / "n.wav").exists()


def test_speaker_on_a_single_speaker_model_is_an_error(exports, tmp_path, capsys):
    llm, dec = exports
    assert main(["synthesize", "--text", TEXT, "--out", str(tmp_path / "x.wav"), "--speaker", "joe",
                 "--llm-path", str(llm), "--decoder-path", str(dec), "--max-tokens", "4"]) == 2
    assert "'joe'" in _err_line(capsys)


def test_text_file_wavs_are_written_as_they_are_synthesised(tts, tmp_path):
    """The --text-file path: when the first wav is on disk only its batch has been synthesised and later wavs
    are not (before, the whole file was synthesised and held in memory before the first wav was written)."""
    texts = [f"Sentence number {i} is here." for i in range(5)]
    outs = [tmp_path / f"{i:06d}.wav" for i in range(5)]
    files = synthesize_to_files(tts, texts, outs, {"seed": 0, "batch_size": 2, "max_tokens": 8})
    first, seconds = next(files)
    assert first == outs[0] and sf.info(str(outs[0])).duration == pytest.approx(seconds)
    assert tts.last_stats["sentences"] == 2 and not any(o.exists() for o in outs[2:])
    assert [o for o, _ in files] == outs[1:] and all(o.is_file() for o in outs)


def test_text_file_output_names_and_audio_unchanged(exports, tts, tmp_path):
    """Batches of --batch-size texts give the same audio as one text at a time (a text's audio depends only on
    the seed, up to float16 rounding flips of its states and one 16-bit step), under the same names as before."""
    llm, dec = exports
    (tmp_path / "texts.txt").write_text("first line.\n\nsecond line here.\nthird one.\n")
    common = ["--llm-path", str(llm), "--decoder-path", str(dec), "--seed", "3", "--max-tokens", "10"]
    assert main(["synthesize", "--text-file", str(tmp_path / "texts.txt"), "--out-dir", str(tmp_path / "o"),
                 "--batch-size", "2", *common]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [".llmtts-output.json", "000000.wav", "000001.wav", "000002.wav"]
    assert main(["synthesize", "--text", "second line here.", "--out", str(tmp_path / "one.wav"), *common]) == 0
    states, _ = generated(tts, ["second line here."], 3, max_tokens=10)
    bound = 1 / 32768 + max(fp16_flip_bound(tts.decoder, h) for h in states)
    assert_within(sf.read(tmp_path / "one.wav")[0], sf.read(tmp_path / "o" / "000001.wav")[0], bound, "000001.wav")


def test_out_to_a_fifo_is_written_through(exports, tmp_path):
    """`--out /dev/null` (as root) used to replace the device by a regular file; a FIFO shows the same path."""
    llm, dec = exports
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a reader that never blocks the writer
    try:
        assert main(["synthesize", "--text", TEXT, "--out", str(fifo), "--llm-path", str(llm), "--decoder-path",
                     str(dec), "--seed", "0", "--max-tokens", "4"]) == 0
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert os.read(fd, 4) == b"RIFF"
    finally:
        os.close(fd)


def test_bad_paths_and_values_are_one_line_errors(exports, tmp_path, capsys):
    llm, dec = exports
    (tmp_path / "file").write_text("x")
    (tmp_path / "texts.txt").write_text("hello.\n")
    cases = [(["--text", TEXT, "--out", str(tmp_path)], "is a directory"),
             (["--text-file", str(tmp_path / "texts.txt"), "--out-dir", str(tmp_path / "file")], "not a directory"),
             (["--text", TEXT, "--out", str(tmp_path / "x.wav"), "--temperature", "inf"], "temperature"),
             (["--text", TEXT, "--out", str(tmp_path / "x.wav"), "--temperature", "nan"], "temperature"),
             (["--text", TEXT, "--out", str(tmp_path / "x.wav"), "--repetition-penalty", "inf"], "repetition_penalty"),
             (["--text", TEXT, "--out", str(tmp_path / "x.wav"), "--batch-size", "0"], "--batch-size"),
             (["--text", TEXT, "--out", str(tmp_path / "x.wav"), "--threads", "-3"], "--threads"),
             (["--text", TEXT, "--out", str(tmp_path / "x.wav"), "--stream", "--lookahead", "-5"], "--lookahead"),
             (["--text", TEXT, "--out", str(tmp_path / "x.wav"), "--stream", "--lookahead", "100000"], "lookahead"),
             (["--text", TEXT, "--out", str(tmp_path / "x.wav"), "--device", "cuda:99"], "cuda:99")]
    for args, words in cases:
        assert main(["synthesize", *args, "--llm-path", str(llm), "--decoder-path", str(dec)]) == 2
        assert words in _err_line(capsys)
    assert (tmp_path / "file").read_text() == "x" and not (tmp_path / "x.wav").exists()


def test_min_tokens_above_max_tokens_and_batch_size_0_are_refused(tts):
    with pytest.raises(UserError, match="min_tokens must be between 1 and max_tokens"):
        tts.synthesize(TEXT, min_tokens=50, max_tokens=10, seed=0)
    with pytest.raises(UserError, match="batch_size must be >= 1"):
        tts.synthesize_batch([TEXT], batch_size=0, seed=0)
