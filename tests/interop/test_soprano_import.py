"""``llmtts import soprano``: parity with soprano-tts 0.2.0, key/shape checks, refused pickles.

Parity: ``soprano_ref/`` holds what soprano-tts 0.2.0's own ``SopranoTTS.infer`` produced on the seeded
directories of ``soprano_fixture.py`` (``make_soprano_reference.py`` wrote them, in a venv with soprano-tts).
Here the same directory is rebuilt (weight digests must match), imported, and synthesised with ``TTS.load``.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import soprano_fixture
from llmtts.cli import main
from llmtts.errors import UserError
from llmtts.infer.tts import TTS
from llmtts.interop.soprano.decoder import import_decoder, read_pth
from llmtts.interop.soprano.importer import import_soprano
from llmtts.llm.export import load_llm

REF = Path(__file__).parent / "soprano_ref"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("soprano_small")
    info = soprano_fixture.build(root / "model", "small")
    import_soprano(root / "model", root / "out")
    return root, info


def soprano_ids(tts: TTS, text: str, cap: int) -> tuple[list[int], list[int]]:
    """(prompt, generated) as Soprano ids: project ids mapped back through the import's row map."""
    rows = tts.frontend.tokenizer.rows
    (prompt,) = tts.prepare(text)
    _, codes = tts._generate([prompt], [0], tts.resolve_options(max_tokens=cap))
    return [rows[i] for i in prompt], [rows[int(c) + tts.vocab.audio_offset] for c in codes[0]]


def check_parity(root: Path, info: dict, case: str) -> tuple[int, float]:
    ref = json.loads((REF / f"{case}.json").read_text())
    assert (info["llm_digest"], info["decoder_digest"]) == (ref["llm_digest"], ref["decoder_digest"]), \
        "the rebuilt checkpoint differs from the one soprano-tts ran on (torch RNG changed?)"
    tts = TTS.load(root / "out" / "llm", root / "out" / "decoder")
    prompt, tokens = soprano_ids(tts, ref["text"], ref["cap"])
    assert prompt == ref["prompt_ids"]
    want = ref["tokens"][0]
    assert len(tokens) == len(want)
    mismatches = sum(a != b for a, b in zip(tokens, want))
    assert mismatches == 0, (tokens, want)
    wav, sr = tts.synthesize(ref["text"], max_tokens=ref["cap"], seed=0)
    ref_wav = np.load(REF / f"{case}.npy")
    assert sr == 32000 and wav.shape == ref_wav.shape == (ref["samples"],)
    diff = float(np.abs(wav - ref_wav).max())
    scale = float(np.abs(ref_wav).max())
    assert scale > 0 and diff <= 1e-4 * scale + 1e-6, (diff, scale)
    return mismatches, diff


@pytest.mark.parametrize("case", ["small_hello", "small_numbers"])
def test_parity_with_soprano_tts(small, case):
    check_parity(*small, case)


def test_soprano_normaliser_and_splitter_port():
    from llmtts.interop.soprano.text import normalize, split

    for probe in json.loads((REF / "normalizer.json").read_text()):
        assert normalize(probe["text"]) == probe["clean"]
        assert [f"[STOP][TEXT]{s}[START]" for s in split(normalize(probe["text"]))] == probe["prompts"]


def test_import_layout_and_files(small):
    root, _ = small
    model, vocab, frontend = load_llm(root / "out" / "llm")
    n_text = len(soprano_fixture.TEXT_CHARS) + 1  # + [UNK]
    assert (vocab.n_audio, vocab.n_text) == (1000, n_text)
    rows = frontend.tokenizer.rows
    names = soprano_fixture.vocab_tokens(1000)
    assert [names[rows[i]] for i in (vocab.pad, vocab.text_start, vocab.speech_start, vocab.stop)] == \
        ["[PAD]", "[TEXT]", "[START]", "[STOP]"]
    assert [names[rows[vocab.audio_offset + c]] for c in (0, 1, 999)] == ["[0]", "[1]", "[999]"]
    assert sorted(r for r in rows if r >= 0) == list(range(len(names) + soprano_fixture.UNNAMED_ROWS))
    inference = json.loads((root / "out" / "llm" / "inference.json").read_text())
    assert inference["full_vocab"] == 1 and inference["penalize_prompt"] == 1
    # rows really moved: project row of [STOP] holds Soprano's [STOP] row
    from safetensors.torch import load_file

    src = load_file(str(root / "model" / "model.safetensors"))
    assert torch.equal(model.lm_head.weight[vocab.stop], src["lm_head.weight"][names.index("[STOP]")])
    assert torch.equal(model.model.embed_tokens.weight[vocab.audio_offset + 7], src["model.embed_tokens.weight"][4 + 7])


# --- bad decoder.pth ----------------------------------------------------------------------------------------
def _small_decoder_state(tmp_path) -> dict:
    soprano_fixture.build(tmp_path / "m", "small")
    return torch.load(str(tmp_path / "m" / "decoder.pth"), weights_only=True)


@pytest.mark.parametrize("edit, needle", [
    (lambda sd: sd.pop("decoder.convnext.1.pwconv2.weight"), "missing key 'decoder.convnext.1.pwconv2.weight'"),
    (lambda sd: sd.__setitem__("decoder.extra.weight", torch.zeros(3)), "unexpected key 'decoder.extra.weight'"),
    (lambda sd: sd.__setitem__("decoder.convnext.0.pwconv2.weight", torch.zeros(64, 100)),
     "key 'decoder.convnext.0.pwconv2.weight' has shape [64, 100], expected [64, 192]"),
    (lambda sd: sd.__setitem__("head.istft.window", torch.zeros(1024)), "key 'head.istft.window' has shape [1024]"),
])
def test_wrong_decoder_keys_are_one_line_errors(tmp_path, edit, needle):
    sd = _small_decoder_state(tmp_path)
    edit(sd)
    torch.save(sd, str(tmp_path / "bad.pth"))
    with pytest.raises(UserError) as err:
        import_decoder(read_pth(tmp_path / "bad.pth"), "bad.pth")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_corrupted_decoder_pth_is_a_one_line_error(small, tmp_path, capsys):
    root, _ = small
    bad = tmp_path / "model"
    bad.mkdir()
    for f in (root / "model").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    data = (bad / "decoder.pth").read_bytes()
    (bad / "decoder.pth").write_bytes(data[: len(data) // 2])  # truncated download
    assert main(["import", "soprano", "--model-dir", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "decoder.pth: unreadable or corrupted" in err and "\n" not in err
    assert not (tmp_path / "out" / "llm").exists()


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"decoder.embed.weight": _Payload(marker)}, f)
    torch.save({"x": _Payload(marker)}, str(tmp_path / "evil_zip.pth"))
    for name in ("evil.pth", "evil_zip.pth"):
        with pytest.raises(UserError, match="refused: not a plain tensor checkpoint"):
            read_pth(tmp_path / name)
    assert not marker.exists()


def test_missing_files_and_foreign_tokenizer(small, tmp_path):
    root, _ = small
    with pytest.raises(UserError, match="missing decoder.pth"):
        empty = tmp_path / "empty"
        empty.mkdir()
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            (empty / name).write_bytes((root / "model" / name).read_bytes())
        import_soprano(empty, tmp_path / "o")
    (empty / "decoder.pth").write_bytes((root / "model" / "decoder.pth").read_bytes())
    (empty / "tokenizer_config.json").write_bytes((root / "model" / "tokenizer_config.json").read_bytes())
    tok = json.loads((empty / "tokenizer.json").read_text())
    tok["model"]["vocab"]["[BEGIN]"] = tok["model"]["vocab"].pop("[START]")
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["content"] != "[START]"]
    (empty / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(UserError, match=r"tokenizer has no \[START\] token"):
        import_soprano(empty, tmp_path / "o")


def test_soprano_edges_stream_equals_offline(small):
    root, _ = small
    tts = TTS.load(root / "out" / "llm", root / "out" / "decoder")
    assert tts.decoder.receptive_field == 2  # 2 blocks of kernel 3 (Soprano's own 8 blocks: 4, test below)
    wav, _ = tts.synthesize("Hello world, this is a test.", max_tokens=14, seed=0)
    chunks = list(tts.stream("Hello world, this is a test.", first_chunk=1, max_chunk=4, max_tokens=14, seed=0))
    streamed = np.concatenate(chunks)
    assert len(chunks) > 3 and streamed.shape == wav.shape == (13 * 2048,)
    assert np.abs(streamed - wav).max() <= 1e-4 * np.abs(wav).max()


def test_real_soprano_decoder_receptive_field():
    from llmtts.decoder.config import DecoderModelConfig
    from llmtts.decoder.model import receptive_field_tokens
    from llmtts.interop.soprano.decoder import SOPRANO_DECODER

    assert receptive_field_tokens(DecoderModelConfig(**SOPRANO_DECODER)) == 4


def test_parity_at_the_real_soprano_shapes(tmp_path):
    info = soprano_fixture.build(tmp_path / "model", "real")
    summary = import_soprano(tmp_path / "model", tmp_path / "out")
    # Soprano-1.1-80M: 79,714,048 LLM parameters (NOTES.md), decoder 8 x 768.
    assert summary["llm_parameters"] == 79_714_048 and summary["rows"] == 8192
    assert summary["decoder_config"]["dim"] == 768 and summary["decoder_config"]["num_layers"] == 8
    check_parity(tmp_path, info, "real_hello")


def test_unnamed_audio_rows_are_found(tmp_path):
    """A tokenizer that names only specials and characters: the 1000 unnamed rows after the specials are audio."""
    soprano_fixture.build(tmp_path / "model", "small", audio_names=False)
    summary = import_soprano(tmp_path / "model", tmp_path / "out")
    assert summary["n_audio"] == 1000 and summary["n_text"] == len(soprano_fixture.TEXT_CHARS) + 1
    assert (summary["soprano_ids"]["audio_first"], summary["soprano_ids"]["audio_last"]) == (4, 1003)


def test_soprano_decoding_batched_equals_one_by_one(small):
    """penalize_prompt + full_vocab with left-padded prompts of different lengths: each row as if alone."""
    root, _ = small
    tts = TTS.load(root / "out" / "llm", root / "out" / "decoder")
    texts = ["Hi.", "Hello world, this is a much longer test sentence."]
    batch = tts.synthesize_batch(texts, max_tokens=10, seed=0, batch_size=2)
    for text, (wav, _) in zip(texts, batch):
        alone, _ = tts.synthesize(text, max_tokens=10, seed=0, batch_size=1)
        assert wav.shape == alone.shape == (9 * 2048,)
        assert np.abs(wav - alone).max() <= 1e-4 * np.abs(alone).max()
