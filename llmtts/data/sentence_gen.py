"""Thousands of distinct English training sentences with no download: essential-generators' Markov text
model (word bigrams learned from Wikipedia articles, shipped inside its PyPI wheel) emits text, and this
module keeps the clean, readable sentences.

Why generated text: a TTS model generalises only after it has heard many distinct sentences; the
project's hand-written set (``sentences.txt``, ~570) is too small to learn more than its own lines. The
sentences are grammatical-ish, wide in vocabulary and deterministic for a seed. None equals a built-in
sentence, so the built-in held-out set stays unseen by every model trained on generated text.
"""
from __future__ import annotations

import random
import re

from llmtts.errors import UserError
from llmtts.optional import require

MIN_WORDS, MAX_WORDS = 5, 18
# Plain prose only: a capital first letter, letters / apostrophes / hyphens / commas inside, one end mark.
# No digits, brackets, quotes or abbreviations: what the sentence says must be what the voice reads.
_CLEAN = re.compile(r"^[A-Z][A-Za-z' ,;-]*[a-z][.!?]$")
_SPLIT = re.compile(r"(?<=[.!?])\s+")


def _key(sentence: str) -> str:
    return re.sub(r"[^a-z ]", "", sentence.lower()).strip()


def generated_sentences(n: int, seed: int, exclude: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``n`` distinct clean sentences, a pure function of ``seed`` (and the package version)."""
    MarkovTextGenerator = require("essential_generators", "text_source 'generated'").MarkovTextGenerator
    gen = MarkovTextGenerator()  # ~4 s: loads the 46 MB bigram table
    seen = {_key(s) for s in exclude}
    out: list[str] = []
    state = random.getstate()  # the generator draws from the global `random`: seed it, then restore
    random.seed(seed)
    try:
        for _ in range(200 * n + 1000):  # ~2.5 clean sentences per draw; the bound only stops a broken model
            for raw in _SPLIT.split(gen.gen_text(max_len=60).replace("\n", " ")):
                s = " ".join(raw.split())
                if MIN_WORDS <= len(s.split()) <= MAX_WORDS and _CLEAN.match(s) and _key(s) not in seen:
                    seen.add(_key(s))
                    out.append(s)
                    if len(out) == n:
                        return out
    finally:
        random.setstate(state)
    raise UserError(f"the sentence generator produced only {len(out)} of {n} distinct sentences")
