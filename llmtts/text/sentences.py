"""Text preparation for inference: sentence splitting (long ones cut, short ones merged) and checks.

Runs *after* normalisation (so "Dr." has become "doctor" and its dot no longer ends a sentence).
"""
from __future__ import annotations

import re

from llmtts.errors import UserError

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_WS = re.compile(r"\s+")


def is_speakable(text: str) -> bool:
    """At least one letter or digit: punctuation and spaces alone give the model nothing to say."""
    return any(ch.isalnum() for ch in text)


def _cut_long(piece: str, max_chars: int) -> list[str]:
    out = []
    while len(piece) > max_chars:
        window = piece[: max_chars + 1]
        # Prefer a clause boundary, then a word boundary, then a hard cut.
        cut = max(window.rfind(", "), window.rfind(": "), window.rfind(" - "))
        if cut < max_chars // 3:
            cut = window.rfind(" ")
        if cut < max_chars // 3:
            cut = max_chars
        else:
            cut += 1  # keep the comma / space on the left piece
        out.append(piece[:cut].strip())
        piece = piece[cut:].strip()
    if piece:
        out.append(piece)
    return out


def split_sentences(text: str, max_chars: int = 300, min_chars: int = 30) -> list[str]:
    """Sentences of at most ``max_chars``; pieces shorter than ``min_chars`` are merged with the next
    (or previous) one while the result still fits. Pieces without speakable characters are dropped."""
    if max_chars < 2:
        raise UserError(f"max_chars must be >= 2, got {max_chars}")
    text = _WS.sub(" ", text).strip()
    pieces: list[str] = []
    for sent in _SENTENCE_END.split(text):
        pieces.extend(_cut_long(sent.strip(), max_chars))
    merged: list[str] = []
    for p in pieces:
        if merged and (len(merged[-1]) < min_chars or len(p) < min_chars) and len(merged[-1]) + 1 + len(p) <= max_chars:
            merged[-1] = merged[-1] + " " + p
        else:
            merged.append(p)
    return [m for m in merged if is_speakable(m)]
