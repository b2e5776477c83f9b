"""Word and character error rates with one documented text normalisation.

Normalisation (applied to reference and hypothesis alike, so formatting never counts as an error):
1. the project's English front end (``llmtts.text``): unicode -> ASCII, numbers, ordinals, currency and
   common abbreviations spelled out, lower case (``use_frontend=False``: unicode -> ASCII and lower case only);
2. every character that is not a letter, digit, apostrophe or space becomes a space
   (punctuation is not speech); apostrophes are kept inside words ("don't") and dropped at word edges;
3. whitespace is collapsed.
WER = (substitutions + deletions + insertions) / reference words, CER the same over characters of the
normalised text with single spaces between words. Corpus-level rates sum edits and lengths over all
utterances (long utterances weigh more), which is what ASR papers report. The alignment is jiwer's, a minimum
Levenshtein alignment: where several tie, the split into substitutions/deletions/insertions is the one jiwer
picks; the edit count is the same.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from llmtts.optional import require
from llmtts.text import normalize_text

_NON_SPEECH = re.compile(r"[^a-z0-9' ]+")
_EDGE_APOSTROPHE = re.compile(r"(?<![a-z0-9])'|'(?![a-z0-9])")
_SPACES = re.compile(r"\s+")


def _ascii_lower(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return text.encode("ascii", "ignore").decode("ascii").lower()


def normalize_for_wer(text: str, use_frontend: bool = True) -> str:
    """Text as it is scored: see the module docstring."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    if use_frontend:
        try:
            text = normalize_text(text)
        except Exception:  # a normaliser bug must not abort an evaluation; score the plain text
            pass
    text = _ascii_lower(text)
    text = text.replace("-", " ")
    text = _NON_SPEECH.sub(" ", text)
    text = _EDGE_APOSTROPHE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def edit_ops(ref: Sequence, hyp: Sequence) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of a minimum Levenshtein alignment of hyp to ref, through jiwer
    (rapidfuzz's C++ aligner: ~300x the pure-Python DP this replaced on long texts, the same edit counts)."""
    if not ref or not hyp:  # jiwer refuses an empty reference; the alignment is all deletions or insertions
        return 0, len(ref), len(hyp)
    jiwer = require("jiwer", "WER/CER")
    # Any items (words, characters including spaces) -> one space-free token each, so jiwer's word
    # transform splits exactly into them.
    ids: dict = {}
    ref_t, hyp_t = (" ".join(str(ids.setdefault(x, len(ids))) for x in seq) for seq in (ref, hyp))
    out = jiwer.process_words(ref_t, hyp_t)
    return out.substitutions, out.deletions, out.insertions


@dataclass
class ErrorCounts:
    edits: int = 0
    ref_len: int = 0
    subs: int = 0
    dels: int = 0
    ins: int = 0

    def add(self, other: "ErrorCounts") -> None:
        self.edits += other.edits
        self.ref_len += other.ref_len
        self.subs += other.subs
        self.dels += other.dels
        self.ins += other.ins

    @property
    def rate(self) -> float:
        """Edits per reference unit; an empty reference scores 0 if the hypothesis is empty, else 1."""
        if self.ref_len == 0:
            return 0.0 if self.edits == 0 else 1.0
        return self.edits / self.ref_len


def _counts(ref: Sequence, hyp: Sequence) -> ErrorCounts:
    s, d, n = edit_ops(ref, hyp)
    return ErrorCounts(edits=s + d + n, ref_len=len(ref), subs=s, dels=d, ins=n)


def word_counts(reference: str, hypothesis: str, normalize: bool = True) -> ErrorCounts:
    if normalize:
        reference, hypothesis = normalize_for_wer(reference), normalize_for_wer(hypothesis)
    return _counts(reference.split(), hypothesis.split())


def char_counts(reference: str, hypothesis: str, normalize: bool = True) -> ErrorCounts:
    if normalize:
        reference, hypothesis = normalize_for_wer(reference), normalize_for_wer(hypothesis)
    else:
        reference, hypothesis = " ".join(reference.split()), " ".join(hypothesis.split())
    return _counts(list(reference), list(hypothesis))


def wer(reference: str | Sequence[str], hypothesis: str | Sequence[str], normalize: bool = True) -> float:
    """Word error rate of one utterance, or corpus-level over parallel lists."""
    refs, hyps = _as_lists(reference, hypothesis)
    total = ErrorCounts()
    for r, h in zip(refs, hyps):
        total.add(word_counts(r, h, normalize))
    return total.rate


def cer(reference: str | Sequence[str], hypothesis: str | Sequence[str], normalize: bool = True) -> float:
    """Character error rate of one utterance, or corpus-level over parallel lists."""
    refs, hyps = _as_lists(reference, hypothesis)
    total = ErrorCounts()
    for r, h in zip(refs, hyps):
        total.add(char_counts(r, h, normalize))
    return total.rate


def _as_lists(reference, hypothesis) -> tuple[list[str], list[str]]:
    if isinstance(reference, str) != isinstance(hypothesis, str):
        raise TypeError("reference and hypothesis must both be strings or both be lists")
    if isinstance(reference, str):
        return [reference], [hypothesis]
    refs, hyps = list(reference), list(hypothesis)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    return refs, hyps
