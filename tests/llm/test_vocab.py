import json

import numpy as np
import pytest

from llmtts.errors import UserError
from llmtts.llm.tokenizer import CharTokenizer, Frontend, TokenizeError
from llmtts.llm.vocab import Vocab, VocabError


def test_layout_is_explicit_and_matches_soprano():
    v = Vocab(n_audio=8000, n_text=188, size=8192)
    assert (v.pad, v.text_start, v.speech_start, v.stop) == (0, 1, 2, 3)
    assert v.audio_offset == 4 and v.audio_ids([0, 7999]).tolist() == [4, 8003]
    assert v.text_offset == 8004 and v.used == 8192


def test_speakers_and_text_ranges_do_not_overlap():
    v = Vocab(n_audio=10, n_text=5, speakers=("alice", "bob"))
    assert v.speaker_id("alice") == 14 and v.speaker_id("bob") == 15
    assert v.text_ids([0, 4]) == [16, 20]
    assert v.size == 21
    assert bool(v.is_audio(13)) and not bool(v.is_audio(14)) and not bool(v.is_audio(3))
    with pytest.raises(UserError, match="unknown speaker 'carol'"):
        v.speaker_id("carol")
    with pytest.raises(UserError, match="text id 5"):
        v.text_ids([5])


def test_round_trip(tmp_path):
    v = Vocab(n_audio=30, n_text=3, speakers=("s1",), text_symbols=("a", "b", "c"), size=64)
    v.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path) == v
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(text_offset=99), "'text_offset' is 99"),
    (lambda d: d.update(specials={"pad": 0, "stop": 1, "text_start": 2, "speech_start": 3}), "specials"),
    (lambda d: d.update(format_version=7), "format_version 7"),
    (lambda d: d.pop("n_audio"), "'n_audio' missing"),
    (lambda d: d.update(size=10), "size 10 is smaller"),
    (lambda d: d.update(text_symbols=["a", "a", "b"]), "duplicates"),
    (lambda d: d.update(text_symbols=["a"]), "1 text_symbols but n_text=3"),
])
def test_load_rejects_inconsistent_files(tmp_path, edit, message):
    data = Vocab(n_audio=30, n_text=3, speakers=("s1",), text_symbols=("a", "b", "c")).to_json()
    edit(data)
    (tmp_path / "vocab.json").write_text(json.dumps(data))
    with pytest.raises(VocabError, match=message) as exc:
        Vocab.load(tmp_path / "vocab.json")
    assert str(tmp_path / "vocab.json") in str(exc.value)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(VocabError, match="not found"):
        Vocab.load(tmp_path)
    (tmp_path / "vocab.json").write_text("{nope")
    with pytest.raises(VocabError, match="invalid JSON"):
        Vocab.load(tmp_path)


def test_audio_codes_checked():
    v = Vocab(n_audio=8, n_text=2)
    with pytest.raises(UserError, match="single-codebook"):
        v.audio_ids(np.zeros((5, 2), dtype=np.int16))
    with pytest.raises(UserError, match="out of range"):
        v.audio_ids([0, 8])


def test_char_frontend_round_trip(tmp_path):
    fe = Frontend(CharTokenizer(("a", "b", " ")), normalizer="none")
    assert fe("ab a") == [0, 1, 2, 0]
    with pytest.raises(TokenizeError, match="'z'"):
        fe.encode("az")
    fe.save(tmp_path)
    back = Frontend.load(tmp_path)
    assert back.tokenizer.symbols == ("a", "b", " ") and back.normalizer == "none"


def test_english_frontend_normalises():
    from llmtts.llm.tokenizer import build_frontend

    fe = build_frontend("chars", "english")
    text = fe.normalize("Dr. Smith paid $5.")
    assert text == text.lower() and "5" not in text and "five" in text
    assert fe.tokenizer.decode(fe("Dr. Smith paid $5.")) == text


def test_hf_tokenizer_from_local_dir(tmp_path):
    """Any Hugging Face tokenizer in a local directory works (built here offline, no hub)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from llmtts.llm.hidden import prompt_ids
    from llmtts.llm.tokenizer import build_frontend

    words = {"[UNK]": 0, "hello": 1, "world": 2, "there": 3}
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(str(tmp_path / "tok"))
    fe = build_frontend(str(tmp_path / "tok"), normalizer="none")
    assert fe("hello there world") == [1, 3, 2] and len(fe.tokenizer) == 4
    v = Vocab(n_audio=10, n_text=len(fe.tokenizer))
    assert prompt_ids(v, fe, "hello world") == [v.stop, v.text_start, v.text_offset + 1, v.text_offset + 2,
                                                 v.speech_start]
    fe.save(tmp_path / "export")  # copies the tokenizer next to the model
    back = Frontend.load(tmp_path / "export")
    assert back.tokenizer.kind == "hf" and back("hello world") == [1, 2]
    with pytest.raises(UserError, match="not found"):
        build_frontend(str(tmp_path / "missing"))
