"""The LLM's vocabulary layout: which id means what, written next to the model as ``vocab.json``.

Layout (fixed by this code, never by dict or YAML ordering, so a resumed or exported model can
not silently shift ids)::

    0 pad | 1 text_start | 2 speech_start | 3 stop          specials
    4 ... 4+n_audio-1                                       audio codes 0..n_audio-1 (fixed offset 4)
    ... +n_speakers                                         optional speaker tokens, in the listed order
    ... +n_text                                             text ids (characters or an HF tokenizer's ids)
    ... size-1                                              unused padding (embedding rows rounded up)

With 8000 audio codes and <= 188 text symbols this is Soprano's layout in an 8192-row embedding.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from llmtts.errors import UserError
from llmtts.io import write_text_atomic

# Order matters: these are ids 0..3. Changing it breaks every saved model, hence FORMAT_VERSION.
SPECIALS: tuple[str, ...] = ("pad", "text_start", "speech_start", "stop")
AUDIO_OFFSET = len(SPECIALS)
FORMAT_VERSION = 1


class VocabError(UserError, ValueError):
    """vocab.json is missing, malformed or inconsistent; the message names the file and key."""


@dataclass(frozen=True)
class Vocab:
    n_audio: int
    n_text: int
    speakers: tuple[str, ...] = ()
    # Character tokenizer: the symbol of each text id (len == n_text). Empty for an HF tokenizer.
    text_symbols: tuple[str, ...] = ()
    # Total embedding rows (>= used); 0 = exactly ``used``.
    size: int = 0

    def __post_init__(self) -> None:
        if self.n_audio < 1:
            raise VocabError(f"vocab: n_audio must be >= 1, got {self.n_audio}")
        if self.n_text < 1:
            raise VocabError(f"vocab: n_text must be >= 1, got {self.n_text}")
        if self.text_symbols and len(self.text_symbols) != self.n_text:
            raise VocabError(f"vocab: {len(self.text_symbols)} text_symbols but n_text={self.n_text}")
        if len(set(self.text_symbols)) != len(self.text_symbols):
            raise VocabError("vocab: text_symbols contains duplicates")
        if len(set(self.speakers)) != len(self.speakers):
            raise VocabError(f"vocab: duplicate speaker names in {list(self.speakers)}")
        if any(not s for s in self.speakers):
            raise VocabError("vocab: speaker names must be non-empty")
        if self.size == 0:
            object.__setattr__(self, "size", self.used)
        if self.size < self.used:
            raise VocabError(f"vocab: size {self.size} is smaller than the {self.used} ids the layout needs")

    # --- ids ------------------------------------------------------------------------------------
    pad = 0
    text_start = 1
    speech_start = 2
    stop = 3
    audio_offset = AUDIO_OFFSET

    @property
    def speaker_offset(self) -> int:
        return AUDIO_OFFSET + self.n_audio

    @property
    def text_offset(self) -> int:
        return self.speaker_offset + len(self.speakers)

    @property
    def used(self) -> int:
        return self.text_offset + self.n_text

    def speaker_id(self, name: str) -> int:
        try:
            return self.speaker_offset + self.speakers.index(name)
        except ValueError:
            raise UserError(f"unknown speaker '{name}' (this model knows: {list(self.speakers) or 'none'})") from None

    def audio_ids(self, codes: np.ndarray | Sequence[int]) -> np.ndarray:
        """Codec codes [T] -> LLM ids [T] (int64); raises on codes outside 0..n_audio-1."""
        codes = np.asarray(codes)
        if codes.ndim != 1:
            raise UserError(f"the LLM takes single-codebook codes [T]; got shape {list(codes.shape)} "
                            "(use an FSQ codec with one codebook)")
        if codes.size and (codes.min() < 0 or codes.max() >= self.n_audio):
            raise UserError(f"audio code out of range 0..{self.n_audio - 1}: min {codes.min()}, max {codes.max()}")
        return codes.astype(np.int64) + AUDIO_OFFSET

    def is_audio(self, ids):
        """Elementwise: is this id an audio code? Works on ints, numpy arrays and torch tensors."""
        return (ids >= AUDIO_OFFSET) & (ids < AUDIO_OFFSET + self.n_audio)

    def codes(self, ids):
        """LLM audio ids -> codec codes (no range check; use ``is_audio`` first)."""
        return ids - AUDIO_OFFSET

    def text_ids(self, local: Sequence[int]) -> list[int]:
        """Tokenizer ids (0..n_text-1) -> LLM ids."""
        out = []
        for t in local:
            if not 0 <= t < self.n_text:
                raise UserError(f"text id {t} outside the vocabulary's {self.n_text} text ids "
                                "(tokenizer and vocab.json do not match)")
            out.append(self.text_offset + int(t))
        return out

    # --- files ----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        # Offsets are written out so a reader in another language needs no code, and so load()
        # can check them against this version's layout.
        return {
            "format_version": FORMAT_VERSION,
            "specials": {name: i for i, name in enumerate(SPECIALS)},
            "audio_offset": AUDIO_OFFSET,
            "n_audio": self.n_audio,
            "speaker_offset": self.speaker_offset,
            "speakers": list(self.speakers),
            "text_offset": self.text_offset,
            "n_text": self.n_text,
            "text_symbols": list(self.text_symbols),
            "size": self.size,
        }

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps(self.to_json(), indent=1, ensure_ascii=True))

    @classmethod
    def from_json(cls, data: dict, source: str = "vocab.json") -> "Vocab":
        if not isinstance(data, dict):
            raise VocabError(f"{source}: top level must be an object")
        if data.get("format_version") != FORMAT_VERSION:
            raise VocabError(f"{source}: format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
        want_specials = {name: i for i, name in enumerate(SPECIALS)}
        if data.get("specials") != want_specials:
            raise VocabError(f"{source}: specials {data.get('specials')} differ from this version's {want_specials}")
        for key, tp in (("n_audio", int), ("n_text", int), ("size", int), ("audio_offset", int),
                        ("speaker_offset", int), ("text_offset", int), ("speakers", list), ("text_symbols", list)):
            if not isinstance(data.get(key), tp) or isinstance(data.get(key), bool):
                raise VocabError(f"{source}: key '{key}' missing or not a {tp.__name__}")
        if not all(isinstance(s, str) for s in data["speakers"] + data["text_symbols"]):
            raise VocabError(f"{source}: 'speakers' and 'text_symbols' must be lists of strings")
        try:
            vocab = cls(n_audio=data["n_audio"], n_text=data["n_text"], speakers=tuple(data["speakers"]),
                        text_symbols=tuple(data["text_symbols"]), size=data["size"])
        except VocabError as exc:
            raise VocabError(f"{source}: {str(exc).removeprefix('vocab: ')}") from None
        for key in ("audio_offset", "speaker_offset", "text_offset"):
            if data[key] != getattr(vocab, key):
                raise VocabError(f"{source}: '{key}' is {data[key]} but the layout gives {getattr(vocab, key)} "
                                 "(file edited or written by an incompatible version)")
        return vocab

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.json"
        if not path.is_file():
            raise VocabError(f"{path}: vocabulary file not found")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise VocabError(f"{path}: invalid JSON ({exc})") from None
        return cls.from_json(data, str(path))


def round_up(n: int, multiple: int = 64) -> int:
    return (n + multiple - 1) // multiple * multiple
