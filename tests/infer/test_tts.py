"""TTS API and CLI: lengths, streaming == offline, batch == one-by-one, bad inputs as one-line errors."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from llmtts.cli import main
from llmtts.decoder.export import save_decoder
from llmtts.decoder.model import HiddenDecoder
from llmtts.errors import UserError
from llmtts.infer.stream import StreamDecoder
from llmtts.text.sentences import split_sentences

from infer_helpers import FP32_DECODER_REL, assert_within, fp16_flip_bound, generated, tiny_decoder_cfg

TEXT = "Hello, my name is Soma Siddhartha. I paid $3.50 on May 1st! Did it work?"


def test_wav_length_matches_generated_tokens(tts):
    wav, sr = tts.synthesize(TEXT, seed=1, max_tokens=20)
    assert sr == 16000 and wav.dtype == np.float32 and np.isfinite(wav).all()
    assert len(wav) == tts.last_stats["tokens"] * tts.samples_per_token and len(wav) > 0
    assert tts.last_stats["sentences"] == 2  # "hello ... siddhartha." + two short ones merged


def test_same_seed_same_audio_other_seed_other_audio(tts):
    a, _ = tts.synthesize(TEXT, seed=7, max_tokens=12)
    b, _ = tts.synthesize(TEXT, seed=7, max_tokens=12)
    c, _ = tts.synthesize(TEXT, seed=8, max_tokens=12)
    assert np.array_equal(a, b) and not (len(a) == len(c) and np.allclose(a, c))


@pytest.mark.parametrize("seed", [3, 11, 12])
def test_batch_equals_one_by_one(tts, seed):
    """fp32: a text samples the same tokens alone or in a batch; its audio differs only where fp32 noise between
    the batched and the one-row forward rounds a state to the other float16 neighbour (bound derived per state)."""
    texts = [TEXT, "short.", "Another sentence, somewhat longer than the short one, with a comma."]
    batch = tts.synthesize_batch(texts, seed=seed, max_tokens=16, batch_size=3)
    _, batch_codes = generated(tts, texts, seed, max_tokens=16, batch_size=3)
    k = 0
    for text, (wav, sr) in zip(texts, batch):
        alone, _ = tts.synthesize(text, seed=seed, max_tokens=16)
        states, codes = generated(tts, [text], seed, max_tokens=16)
        assert all(torch.equal(a, b) for a, b in zip(codes, batch_codes[k: k + len(codes)])), text
        k += len(codes)
        assert_within(wav, alone, max(fp16_flip_bound(tts.decoder, h) for h in states), text)


def test_decoding_a_batch_in_one_call_equals_one_call_per_sentence(tts, monkeypatch):
    """``batch_decode`` (the GPU default): the batch's sentences, of different lengths, go through the decoder
    together and each text's audio equals the per-sentence decode (same states; batched kernels' rounding only)."""
    texts = [TEXT, "short.", "Another sentence, somewhat longer than the short one, with a comma."]
    assert tts.batch_decode is False  # a CPU decoder: one call per sentence by default
    apart = tts.synthesize_batch(texts, seed=5, max_tokens=16, batch_size=4)
    monkeypatch.setattr(tts, "_batch_decode", True)
    together = tts.synthesize_batch(texts, seed=5, max_tokens=16, batch_size=4)
    assert tts.last_stats["sentences"] > len(texts)  # sentences of several lengths shared a decoder call
    for (a, _), (b, _) in zip(apart, together):
        assert a.shape == b.shape and len(a) > 0
        assert_within(b, a, FP32_DECODER_REL * max(np.abs(a).max(), 1e-3), "batch decode")


def test_stream_equals_offline(tts):
    """Streaming generates the same batches as synthesize (same tokens, bit-identical states); only the decoder's
    windows differ, so the audio differs by the decoder's fp32 rounding at other shapes."""
    offline, _ = tts.synthesize(TEXT, seed=5, max_tokens=24)
    tokens = tts.last_stats["tokens"]
    chunks = list(tts.stream(TEXT, seed=5, max_tokens=24, first_chunk=1, max_chunk=4))
    assert len(chunks) > 4 and tts.last_stats["first_chunk_s"] > 0 and tts.last_stats["tokens"] == tokens
    assert_within(np.concatenate(chunks), offline, FP32_DECODER_REL * np.abs(offline).max(), "stream")


def test_stream_with_a_causal_decoder_decodes_each_state_once_and_equals_offline(tts):
    """A causal decoder streams incrementally (its state carried, no window recomputed): same audio as offline."""
    from llmtts import TTS

    torch.manual_seed(0)
    dec = HiddenDecoder(replace(tts.decoder.cfg, conv_lookahead=0)).eval()
    for b in dec.backbone.blocks:
        b.gamma.data.fill_(1.0)
    causal = TTS(tts.llm, tts.vocab, tts.frontend, dec)
    frames = []  # frames through the decoder's stack, per call
    hook = dec.backbone.embed.register_forward_hook(lambda m, i, o: frames.append(o.shape[-1]))
    offline, _ = causal.synthesize(TEXT, seed=5, max_tokens=24)
    tokens, offline_frames = causal.last_stats["tokens"], sum(frames)
    assert offline_frames == tokens * dec.cfg.upsample
    frames.clear()
    chunks = list(causal.stream(TEXT, seed=5, max_tokens=24, first_chunk=1, max_chunk=4))
    hook.remove()
    assert len(chunks) > 4 and causal.last_stats["tokens"] == tokens
    assert sum(frames) == offline_frames  # every frame once: no left context recomputed per chunk
    assert_within(np.concatenate(chunks), offline, FP32_DECODER_REL * np.abs(offline).max(), "causal stream")


@pytest.mark.parametrize("first,maxc,lookahead", [(1, 1, -1), (2, 8, -1), (5, 64, -1), (1, 1, 0), (2, 8, 0),
                                                  (2, 8, 1)])
def test_chunked_decoding_equals_full_decoding(first, maxc, lookahead):
    torch.manual_seed(0)
    dec = HiddenDecoder(replace(tiny_decoder_cfg(), conv_lookahead=lookahead)).eval()
    for b in dec.backbone.blocks:
        b.gamma.data.fill_(1.0)  # strong residuals: the receptive field really is used
    h = torch.randn(29, 32)
    with torch.no_grad():
        full = dec(h[None])[0].numpy()
        sd = StreamDecoder(lambda x: dec(x[None])[0].numpy(), dec.context, 256, first, maxc)
        out, first_at = [], None
        for i in range(0, 29):  # one token at a time, as generation delivers them
            got = sd.push(h[i:i + 1])
            if got and first_at is None:
                first_at = i + 1
            out += got
        out.append(sd.flush())
    # Exact chunks wait for the right context only: 1 token for a causal decoder, 2 with one frame of look-ahead
    # per convolution (their left context is longer), 4 centred (this 2-block test decoder).
    left, right = dec.context
    assert first_at == first + right and right == {-1: 4, 0: 1, 1: 2}[lookahead] and (left > right) == (lookahead >= 0)
    assert_within(np.concatenate(out), full, FP32_DECODER_REL * np.abs(full).max(), "chunked")


@pytest.mark.parametrize("lookahead", [0, 2])
def test_smaller_lookahead_emits_earlier_with_the_same_length(lookahead):
    torch.manual_seed(0)
    dec = HiddenDecoder(tiny_decoder_cfg()).eval()
    h = torch.randn(29, 32)
    R = dec.receptive_field
    assert R > 2
    with torch.no_grad():
        full = dec(h[None])[0].numpy()
        sd = StreamDecoder(lambda x: dec(x[None])[0].numpy(), R, 256, 1, 4, lookahead=lookahead)
        out, first_at = [], None
        for i in range(29):  # one token at a time, as generation delivers them
            got = sd.push(h[i:i + 1])
            if got and first_at is None:
                first_at = i + 1
            out += got
        out.append(sd.flush())
    assert first_at == 1 + lookahead  # instead of 1 + R with exact streaming
    stream = np.concatenate(out)
    assert stream.shape == full.shape
    # The left context is exact, so the first token's samples differ only through missing right context,
    # and the very last chunk (flushed with the true right edge) is exact.
    assert_within(stream[-256:], full[-256:], FP32_DECODER_REL * np.abs(full).max(), "last chunk")
    with pytest.raises(ValueError, match="lookahead"):
        StreamDecoder(lambda x: x, R, 256, lookahead=R + 1)


def test_sentence_splitting():
    assert split_sentences("one. two. three.", max_chars=300, min_chars=0) == ["one.", "two.", "three."]
    assert split_sentences("one. two. three.", max_chars=300, min_chars=30) == ["one. two. three."]
    long = ("word " * 200).strip()
    parts = split_sentences(long, max_chars=50, min_chars=10)
    assert all(len(p) <= 50 for p in parts) and " ".join(parts) == long
    assert split_sentences("!!! ... ?", 300, 30) == []


@pytest.mark.parametrize("text,match", [("", "empty"), ("   \n\t ", "empty"), ("?! ... --", "no speakable"),
                                        ("\u2603\u2603 \U0001F600", "no speakable")])
def test_unusable_text_is_a_user_error(tts, text, match):
    with pytest.raises(UserError, match=match):
        tts.synthesize(text, seed=0, max_tokens=4)


def test_unknown_characters_are_dropped_not_fatal(tts):
    wav, _ = tts.synthesize("caf\u00e9 \u2603 na\u00efve \u4e16\u754c ok", seed=0, max_tokens=4)
    assert len(wav) > 0


def test_ten_thousand_characters_are_split_and_bounded(tts):
    text = " ".join(f"This is sentence number {i}, which keeps going with many more words so that it is rather "
                    "long, like the sentences of a novel that never seem to end, until it finally stops."
                    for i in range(100))[:10_000]
    assert len(text) == 10_000
    wav, _ = tts.synthesize(text, seed=0, max_tokens=2, batch_size=64)
    n = tts.last_stats["sentences"]
    assert n >= 10_000 // 300 and len(wav) == tts.last_stats["tokens"] * tts.samples_per_token <= n * 2 * 256
    with pytest.raises(UserError, match="max_text_chars"):
        tts.synthesize("a" * 200_001)


def test_mismatched_llm_and_decoder(exports, tmp_path):
    from llmtts import TTS

    llm, dec = exports
    save_decoder(HiddenDecoder(tiny_decoder_cfg(hidden=48)), tmp_path / "d48")
    with pytest.raises(UserError, match="hidden size 32 does not match the decoder's input size 48"):
        TTS.load(llm, tmp_path / "d48")
    save_decoder(HiddenDecoder(tiny_decoder_cfg()), tmp_path / "other", llm_info={"n_audio": 1000})
    with pytest.raises(UserError, match="n_audio=1000"):
        TTS.load(llm, tmp_path / "other")
    with pytest.raises(UserError, match="no such run"):
        TTS.load(tmp_path / "nope", dec)
    with pytest.raises(UserError, match="not a decoder export"):
        TTS.load(llm, tmp_path)


def test_cli_text_stream_and_batch(exports, tmp_path, capsys):
    llm, dec = exports
    common = ["--llm-path", str(llm), "--decoder-path", str(dec), "--seed", "1", "--max-tokens", "10"]
    assert main(["synthesize", "--text", TEXT, "--out", str(tmp_path / "a.wav"), *common]) == 0
    assert main(["synthesize", "--text", TEXT, "--out", str(tmp_path / "s.wav"), "--stream", *common]) == 0
    assert "first chunk after" in capsys.readouterr().out
    a, sr = sf.read(tmp_path / "a.wav")
    s, _ = sf.read(tmp_path / "s.wav")
    assert sr == 16000 and len(a) > 0 and len(a) % 256 == 0
    assert_within(s, a, 1 / 32768 + FP32_DECODER_REL, "16-bit wavs")  # one LSB of 16-bit audio + decoder rounding
    (tmp_path / "texts.txt").write_text("first line.\n\nsecond line here.\n")
    assert main(["synthesize", "--text-file", str(tmp_path / "texts.txt"), "--out-dir", str(tmp_path / "o"), *common]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [".llmtts-output.json", "000000.wav", "000001.wav"]  # marked ours


def test_cli_bad_inputs_exit_2_with_one_line(exports, tmp_path, capsys):
    llm, dec = exports
    cases = [["--text", " ", "--out", str(tmp_path / "x.wav")],
             ["--text", "hi", "--out", str(tmp_path / "x.wav"), "--temperature", "-1"],
             ["--text-file", str(tmp_path / "missing.txt"), "--out-dir", str(tmp_path)],
             ["--text", "hi"]]
    for args in cases:
        assert main(["synthesize", *args, "--llm-path", str(llm), "--decoder-path", str(dec)]) == 2
        err = capsys.readouterr().err.strip().splitlines()  # splitlines() also splits a progress bar's \r
        assert len(err) == 1 and err[0].startswith("llmtts: error:"), err
    assert not (tmp_path / "x.wav").exists()


def test_generation_stops_at_the_models_positions(tts, monkeypatch):
    """A rotary model does not fail past max_position_embeddings, it babbles: never generate there."""
    monkeypatch.setattr(tts.llm.config, "max_position_embeddings", 64)
    prompt = tts.prepare("Hello there.")[0]
    tts.synthesize("Hello there.", seed=0, min_tokens=64 - len(prompt) + 5, max_tokens=4000)
    assert tts.last_stats["tokens"] == 64 - len(prompt)  # min_tokens forced it to the last position, not past
    with pytest.raises(UserError, match="past the model's 64 positions"):
        tts.synthesize("Hello there.", seed=0, min_tokens=64, max_tokens=100)


def test_unusable_outputs_and_broken_weights_are_one_line_errors(exports, tmp_path, capsys):
    """Found before synthesis (an --out under a file, in an unwritable folder) or at load (truncated weights, an
    LLM or decoder config that disagrees with its weights, a model that is not Qwen3: a traceback, or for Llama
    silent noise, before)."""
    import shutil

    llm, dec = exports
    (tmp_path / "afile").write_text("x")
    broken = tmp_path / "broken_llm"
    shutil.copytree(llm, broken)
    weights = broken / "export" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    unverified = tmp_path / "broken_unverified"  # the same, in an export without checksums (older, or hand-made)
    shutil.copytree(broken, unverified)
    (unverified / "export" / ".llmtts-output.json").unlink()
    import json

    wide = tmp_path / "wide_dec"
    shutil.copytree(dec, wide)
    cfg = json.loads((wide / "export" / "config.json").read_text())
    cfg["model"]["intermediate_dim"] *= 2  # the config no longer describes the weights
    (wide / "export" / "config.json").write_text(json.dumps(cfg))
    def llm_with_config(name: str, **changes):  # an LLM folder whose config.json no longer describes its weights
        d = tmp_path / name
        shutil.copytree(llm, d)
        c = json.loads((d / "export" / "config.json").read_text())
        (d / "export" / "config.json").write_text(json.dumps({**c, **changes}))
        return str(d)

    cases = [(["--out", str(tmp_path / "afile" / "x.wav")], "is a file, not a folder"),
             (["--out", str(tmp_path / "w.wav"), "--llm-path", llm_with_config("wide_llm", hidden_size=48)],
              "config.json does not match the weights' shapes"),
             (["--out", str(tmp_path / "w.wav"), "--llm-path", llm_with_config("deep_llm", num_hidden_layers=3)],
              "cannot load the model"),
             (["--out", str(tmp_path / "w.wav"), "--llm-path",
               llm_with_config("llama", model_type="llama", architectures=["LlamaForCausalLM"])],
              "model_type 'llama' in config.json; the LLM must be a Qwen3 causal LM"),
             (["--out", str(tmp_path / "z.wav"), "--decoder-path", str(wide)], "shape(s) differ"),
             (["--out", "/proc/x.wav"], "--out /proc/x.wav: "),  # read-only (policy) or unwritable (probe)
             (["--out", str(tmp_path / "y.wav"), "--llm-path", str(broken)], "sha256 differs"),
             (["--out", str(tmp_path / "y.wav"), "--llm-path", str(unverified)], "cannot load the model")]
    for args, message in cases:
        argv = ["synthesize", "--text", "hi", "--llm-path", str(llm), "--decoder-path", str(dec), *args]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_a_long_text_is_made_and_written_a_batch_at_a_time(exports, tmp_path, monkeypatch):
    """`synthesize_pieces` yields each sentence's audio a batch at a time (generation runs lazily: one batch of
    states and audio in memory), the pieces equal `synthesize` exactly, and `llmtts synthesize --out` writes them
    as they come: the wav equals the one `synthesize` gives."""
    from llmtts import TTS
    from llmtts.audio import wav_bytes

    tts = TTS.load(*exports)
    text = " ".join(f"Sentence number {i} is here, and it is long enough to stand alone." for i in range(7))
    opts = dict(seed=3, max_tokens=12, batch_size=2)
    whole = tts.synthesize(text, **opts)[0]
    calls = []
    real = tts._generate
    monkeypatch.setattr(tts, "_generate", lambda *a: calls.append(len(a[0])) or real(*a))
    pieces = tts.synthesize_pieces(text, **opts)
    first = next(pieces)
    assert calls == [2]  # one batch made, not seven sentences
    rest = list(pieces)
    assert calls == [2, 2, 2, 1] and len(rest) == 6
    np.testing.assert_array_equal(np.concatenate([first, *rest]), whole)
    monkeypatch.undo()
    out = tmp_path / "long.wav"
    assert main(["synthesize", "--text", text, "--out", str(out), "--llm-path", str(exports[0]),
                 "--decoder-path", str(exports[1]), "--seed", "3", "--max-tokens", "12", "--batch-size", "2"]) == 0
    assert out.read_bytes() == wav_bytes(whole, tts.sample_rate)
    assert [p.name for p in tmp_path.iterdir()] == ["long.wav"]  # no temporary file left beside it
