"""Text front end: normaliser + tokenizer, saved as ``frontend.json`` next to the model.

The default tokenizer is one id per character over a fixed symbol set (what Soprano does); ``phonemes``
reads eSpeak NG phonemes instead (an easier, regular input for small data: the same spelling always maps
to the same sounds), and any Hugging Face tokenizer in a local directory can replace both
(``tokenizer: PATH``). Tokenizers return *local* text ids 0..n_text-1; ``Vocab.text_ids`` moves them to
the text range. The front end is saved with the export, so inference encodes text exactly as training did.
"""
from __future__ import annotations

import json
import shutil
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from llmtts.errors import TokenizeError, UserError  # noqa: F401 (TokenizeError re-exported)
from llmtts.optional import require
from llmtts.io import write_text_atomic

# Printable ASCII: what the English normaliser emits (lower case, ASCII). 95 symbols <= Soprano's 188.
DEFAULT_SYMBOLS: tuple[str, ...] = tuple(" " + string.ascii_lowercase + string.digits + string.punctuation
                                         + string.ascii_uppercase)


class CharTokenizer:
    kind = "chars"

    def __init__(self, symbols: tuple[str, ...] = DEFAULT_SYMBOLS):
        if any(len(s) != 1 for s in symbols):
            raise UserError("character tokenizer: every symbol must be exactly one character")
        self.symbols = tuple(symbols)
        self._index = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._index[c] for c in text]
        except KeyError as exc:
            raise TokenizeError(f"character {exc.args[0]!r} is not in the tokenizer's symbol set "
                                f"(text: {text[:60]!r})") from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.symbols[i] for i in ids)


class PhonemeTokenizer:
    """Normalised text -> eSpeak NG IPA phonemes (piper-tts's bundled espeak-ng, the ``phonemes`` extra; the
    same phonemizer the built-in Piper voice reads) -> one id per phoneme symbol.

    Symbols are Piper's phoneme set (IPA letters, stress marks, punctuation). Symbols eSpeak emits outside
    that set are dropped (they are rare diacritics); ``dropped`` counts them. Encoding is cached: training
    encodes the same sentences every epoch."""

    kind = "phonemes"

    def __init__(self, symbols: tuple[str, ...] | None = None, voice: str = "en-us"):
        if symbols is None:
            DEFAULT_PHONEME_ID_MAP = require("piper.phoneme_ids", "phoneme input").DEFAULT_PHONEME_ID_MAP

            # one codepoint each: phonemize() splits eSpeak's output into codepoints (Piper's few
            # multi-codepoint vowel clusters are for other voices' merged ids)
            symbols = tuple(k for k in sorted(DEFAULT_PHONEME_ID_MAP, key=lambda k: DEFAULT_PHONEME_ID_MAP[k][0])
                            if len(k) == 1)
        if any(len(s) != 1 for s in symbols):
            raise UserError("phoneme tokenizer: every symbol must be exactly one character")
        self.phonemes = tuple(symbols)  # not ``symbols``: those would be read as the text's own characters
        self.voice = voice
        self._index = {s: i for i, s in enumerate(self.phonemes)}
        self._cache: dict[str, list[int]] = {}
        self.dropped = 0

    def __getstate__(self) -> dict:  # DataLoader workers start their own eSpeak
        return {**self.__dict__, "_cache": {}}

    def __len__(self) -> int:
        return len(self.phonemes)

    def phonemize(self, text: str) -> str:
        EspeakPhonemizer = require("piper.phonemize_espeak", "phoneme input").EspeakPhonemizer

        sentences = EspeakPhonemizer().phonemize(self.voice, text)  # initialises once per process
        return " ".join("".join(ph) for ph in sentences)

    def encode(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ph = self.phonemize(text)
            ids = [self._index[c] for c in ph if c in self._index]
            self.dropped += len(ph) - len(ids)
            if len(self._cache) < 200_000:
                self._cache[text] = ids
        return list(ids)

    def decode(self, ids: list[int]) -> str:
        return "".join(self.phonemes[i] for i in ids)


class HFTokenizer:
    kind = "hf"

    def __init__(self, path: str | Path):
        from transformers import AutoTokenizer  # lazy: heavy import

        self.path = Path(path)
        if not self.path.is_dir():
            raise UserError(f"tokenizer directory not found: {self.path}")
        try:
            self.tok = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        except Exception as exc:  # transformers raises OSError / ValueError variants
            raise UserError(f"{self.path}: cannot load a Hugging Face tokenizer ({exc})") from None

    def __len__(self) -> int:
        return len(self.tok)

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)


def _identity(text: str) -> str:
    return text


def _normalizer(name: str) -> Callable[[str], str]:
    if name == "none":
        return _identity
    if name == "english":
        # Lazy: llmtts.text is another package's and only needed when text is normalised here.
        from llmtts.text.normalize import normalize_text

        return normalize_text
    if name == "soprano":  # Soprano's own clean_text (imported Soprano models)
        from llmtts.interop.soprano.text import normalize

        return normalize
    raise UserError(f"unknown text normaliser '{name}' (choose 'english', 'soprano' or 'none')")


@dataclass
class Frontend:
    """Raw text -> local text ids. ``normalize`` is applied at inference; training data already
    carries ``normalized_text`` and goes through ``encode`` only."""

    tokenizer: CharTokenizer | PhonemeTokenizer | HFTokenizer | Any  # Any: interop tokenizers (kind "soprano")
    normalizer: str = "english"

    def __post_init__(self) -> None:
        self._norm = None

    def __getstate__(self) -> dict:  # picklable for DataLoader workers: the normaliser is re-imported there
        return {**self.__dict__, "_norm": None}

    def normalize(self, text: str) -> str:
        if self._norm is None:
            self._norm = _normalizer(self.normalizer)
        return self._norm(text)

    def encode(self, normalized_text: str) -> list[int]:
        return self.tokenizer.encode(normalized_text)

    def __call__(self, text: str) -> list[int]:
        return self.encode(self.normalize(text))

    def split(self, normalized: str, max_chars: int = 300, min_chars: int = 30) -> list[str]:
        """Normalised text -> sentences for inference (Soprano's own splitter with its normaliser)."""
        if self.normalizer == "soprano":
            from llmtts.interop.soprano.text import split

            return split(normalized, max_chars, min_chars)
        from llmtts.text.sentences import split_sentences

        return split_sentences(normalized, max_chars, min_chars)

    # --- files ----------------------------------------------------------------------------------
    def save(self, out_dir: str | Path) -> None:
        """Write frontend.json (and copy an HF tokenizer into ``out_dir/tokenizer``)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        data: dict = {"normalizer": self.normalizer, "tokenizer": self.tokenizer.kind}
        if isinstance(self.tokenizer, CharTokenizer):
            data["symbols"] = "".join(self.tokenizer.symbols)
        elif isinstance(self.tokenizer, PhonemeTokenizer):
            data["symbols"] = "".join(self.tokenizer.phonemes)
            data["voice"] = self.tokenizer.voice
        elif self.tokenizer.kind == "soprano":
            data.update(self.tokenizer.save(out_dir))
        else:
            dst = out_dir / "tokenizer"
            if dst.resolve() != self.tokenizer.path.resolve():
                if dst.exists():
                    shutil.rmtree(dst)
                self.tokenizer.tok.save_pretrained(str(dst))
            data["path"] = "tokenizer"
        write_text_atomic(out_dir / "frontend.json", json.dumps(data, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Frontend":
        path = Path(path)
        file = path / "frontend.json" if path.is_dir() else path
        if not file.is_file():
            raise UserError(f"{file}: front-end file not found")
        try:
            data = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{file}: invalid JSON ({exc})") from None
        kind = data.get("tokenizer")
        if kind == "chars":
            symbols = data.get("symbols")
            if not isinstance(symbols, str) or not symbols:
                raise UserError(f"{file}: key 'symbols' must be a non-empty string")
            tok: CharTokenizer | PhonemeTokenizer | HFTokenizer = CharTokenizer(tuple(symbols))
        elif kind == "phonemes":
            symbols = data.get("symbols")
            if not isinstance(symbols, str) or not symbols:
                raise UserError(f"{file}: key 'symbols' must be a non-empty string")
            tok = PhonemeTokenizer(tuple(symbols), voice=str(data.get("voice", "en-us")))
        elif kind == "hf":
            tok = HFTokenizer(file.parent / str(data.get("path", "tokenizer")))
        elif kind == "soprano":
            from llmtts.interop.soprano.tokenizer import SopranoTokenizer

            tok = SopranoTokenizer.from_frontend(data, file)
        else:
            raise UserError(f"{file}: key 'tokenizer' must be 'chars', 'phonemes', 'hf' or 'soprano', got {kind!r}")
        return cls(tokenizer=tok, normalizer=str(data.get("normalizer", "english")))


def build_frontend(tokenizer: str = "chars", normalizer: str = "english") -> Frontend:
    """``tokenizer``: "chars", "phonemes", a local Hugging Face tokenizer directory, or ``frontend:PATH``: the
    whole front end (tokenizer *and* normaliser) of an LLM export or run, e.g. one imported from Soprano, so a
    fine-tune reads text exactly as the model it starts from."""
    if tokenizer.startswith("frontend:"):
        from llmtts.export_dir import resolve_export  # not llm.export: it imports this module

        return Frontend.load(resolve_export(tokenizer[len("frontend:"):]) / "frontend.json")
    if tokenizer in ("", "chars"):
        tok: CharTokenizer | PhonemeTokenizer | HFTokenizer = CharTokenizer()
    elif tokenizer == "phonemes":
        tok = PhonemeTokenizer()
    else:
        tok = HFTokenizer(tokenizer)
    if normalizer not in ("english", "soprano", "none"):
        raise UserError(f"unknown text normaliser '{normalizer}' (choose 'english', 'soprano' or 'none')")
    return Frontend(tokenizer=tok, normalizer=normalizer)
