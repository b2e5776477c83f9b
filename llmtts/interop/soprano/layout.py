"""Soprano's vocabulary -> this project's layout (``llmtts.llm.vocab``), as a row permutation.

Soprano names its specials ``[STOP]`` (also the end-of-sequence id), ``[TEXT]`` and ``[START]``; audio codes are
tokens whose names carry the code number with a common prefix/suffix (e.g. ``[0]`` .. ``[7999]``), or, when the
tokenizer names no such tokens, the longest run of embedding rows no token names; every other named token is text. This project wants ``0 pad | 1 text_start | 2 speech_start | 3 stop | audio | text``, so
the import permutes embedding and output rows: ``rows[p]`` is the Soprano row that becomes project row ``p``
(-1: Soprano has no such row, e.g. pad when its tokenizer has none). A permutation of rows changes no
computation: the model is the same function of the same tokens.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from llmtts.errors import UserError
from llmtts.llm.vocab import Vocab

_NUMBERED = re.compile(r"^(\D*?)(0|[1-9]\d*)(\D*)$")


@dataclass
class SopranoLayout:
    stop: int
    text: int
    start: int
    pad: int | None  # a pad token distinct from the three specials, if the tokenizer has one
    audio: list[int]  # Soprano id of audio code c
    text_ids: list[int]  # Soprano ids of the text tokens, ascending
    text_names: list[str]
    rows: int  # Soprano's embedding rows (config vocab_size)

    def project_vocab(self) -> Vocab:
        used = 4 + len(self.audio) + len(self.text_ids)
        named = len(self.audio) + len(self.text_ids) + 3 + (self.pad is not None)
        # Soprano rows no token names keep a place after the layout, so an export gives them back.
        size = used + max(self.rows - named, 0)
        return Vocab(n_audio=len(self.audio), n_text=len(self.text_ids), text_symbols=tuple(self.text_names),
                     size=size)

    def row_map(self, vocab: Vocab) -> list[int]:
        """Project id -> Soprano id (-1 = none), for all ``vocab.size`` rows."""
        rows = [-1] * vocab.size
        rows[vocab.pad] = -1 if self.pad is None else self.pad
        rows[vocab.text_start], rows[vocab.speech_start], rows[vocab.stop] = self.text, self.start, self.stop
        for c, sid in enumerate(self.audio):
            rows[vocab.audio_offset + c] = sid
        for j, sid in enumerate(self.text_ids):
            rows[vocab.text_offset + j] = sid
        unnamed = sorted(set(range(self.rows)) - set(r for r in rows if r >= 0))
        for k, sid in enumerate(unnamed):
            rows[vocab.used + k] = sid
        return rows


MIN_AUDIO = 256  # fewer numbered names are not a codebook (digits "0".."9" are text)


def _audio_tokens(vocab: dict[str, int], taken: set[int]) -> dict[int, int]:
    """code -> Soprano id: the largest group of numbered names sharing a prefix and suffix."""
    groups: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for name, i in vocab.items():
        m = _NUMBERED.match(name)
        if m and i not in taken:
            groups[(m.group(1), m.group(3))][int(m.group(2))] = i
    best = max(groups.values(), key=len, default={})
    return best if len(best) >= MIN_AUDIO else {}


def _unnamed_run(vocab: dict[str, int], rows: int) -> range:
    """The longest run of consecutive embedding rows no token names (audio ids a tokenizer leaves unnamed)."""
    named = set(vocab.values())
    best, start = range(0), None
    for i in range(rows + 1):
        if i < rows and i not in named:
            start = i if start is None else start
        elif start is not None:
            best = max(best, range(start, i), key=len)
            start = None
    return best


def analyse(tok, config, source: str, audio_first_id: int | None = None, n_audio: int | None = None) -> SopranoLayout:
    """Read the layout from Soprano's ``AutoTokenizer`` and HF config; one-line errors name what is missing.
    ``audio_first_id``: audio code c is Soprano id ``audio_first_id + c`` (``n_audio`` codes, default 8000).
    ``n_audio`` with unnamed audio rows: the first ``n_audio`` rows of the run (default: all of it)."""
    vocab = dict(tok.get_vocab())
    for name in ("[STOP]", "[TEXT]", "[START]"):
        if name not in vocab:
            raise UserError(f"{source}: tokenizer has no {name} token (not a Soprano tokenizer)")
    stop, text, start = vocab["[STOP]"], vocab["[TEXT]"], vocab["[START]"]
    eos = config.eos_token_id
    eos = eos[0] if isinstance(eos, (list, tuple)) and len(eos) == 1 else eos
    if eos != stop:
        raise UserError(f"{source}: config.json eos_token_id is {eos!r} but [STOP] is id {stop}; Soprano stops on "
                        "[STOP], this importer needs them equal")
    pad = tok.pad_token_id
    if pad in (stop, text, start):
        pad = None
    specials = {stop, text, start} | ({pad} if pad is not None else set())
    if audio_first_id is not None:
        n_audio = n_audio or 8000
        audio = {c: audio_first_id + c for c in range(n_audio)}
        clash = specials & set(audio.values())
        if clash:
            raise UserError(f"{source}: audio ids {audio_first_id}..{audio_first_id + n_audio - 1} overlap special id "
                            f"{min(clash)}")
    else:
        audio = _audio_tokens(vocab, specials)
        if not audio:
            # No numbered audio names: Soprano's runtime never decodes audio ids to text, so a tokenizer may
            # leave them unnamed. The longest unnamed run of rows then holds codes 0..n_audio-1.
            run = _unnamed_run(vocab, int(config.vocab_size))
            if len(run) < max(n_audio or 0, MIN_AUDIO):
                raise UserError(f"{source}: found no numbered audio tokens ([0]..[N-1]) in the tokenizer and no run "
                                f"of {max(n_audio or 0, MIN_AUDIO)} unnamed rows (pass --audio-first-id / --n-audio)")
            audio = {c: run.start + c for c in range(n_audio or len(run))}
        if sorted(audio) != list(range(len(audio))):
            raise UserError(f"{source}: numbered audio tokens are not 0..N-1 (codes {min(audio)}..{max(audio)}, "
                            f"{len(audio)} of them; pass --audio-first-id to say where the audio ids start)")
    audio_ids = [audio[c] for c in range(len(audio))]
    taken = specials | set(audio_ids)
    text_items = sorted((i, name) for name, i in vocab.items() if i not in taken)
    rows = int(config.vocab_size)
    too_big = max(vocab.values())
    if too_big >= rows or max(audio_ids) >= rows:
        raise UserError(f"{source}: tokenizer id {max(too_big, max(audio_ids))} is outside the model's "
                        f"{rows} embedding rows (config.json vocab_size)")
    if not text_items:
        raise UserError(f"{source}: tokenizer has no text tokens")
    return SopranoLayout(stop=stop, text=text, start=start, pad=pad, audio=audio_ids,
                         text_ids=[i for i, _ in text_items], text_names=[n for _, n in text_items], rows=rows)
