"""Batches of training sequences: packed (several utterances per fixed-length row) or padded.

Targets are built here, per utterance, already shifted: ``targets[i]`` is the token that position
``i`` must predict, i.e. ``ids[i + 1]`` of the *same* utterance (never the next utterance's first
token), ``-100`` where nothing is predicted. ``kinds[i]`` says which loss a target belongs to:

    TEXT:  text_start, t1..tK, speech_start      (weighted by ``text_loss_weight``)
    AUDIO: a1..aN and the final stop             (the speech loss)

Packed rows rely on transformers' packed-sequence path: with ``attention_mask=None``, position ids
that restart at 0 per utterance and *no KV cache* (``use_cache=False``), Qwen3 builds a
block-diagonal causal mask, so attention stays inside each utterance.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch

from llmtts.errors import UserError

IGNORE = -100
NONE, TEXT, AUDIO = 0, 1, 2


@dataclass
class Segment:
    """One training sequence ``prompt a1..aN [stop]`` and its prompt length (index of a1)."""

    ids: np.ndarray
    n_prompt: int

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class LMBatch:
    input_ids: torch.Tensor     # [R, L] long
    position_ids: torch.Tensor  # [R, L] long
    targets: torch.Tensor       # [R, L] long, IGNORE where no loss
    kinds: torch.Tensor         # [R, L] uint8: NONE / TEXT / AUDIO
    segment: torch.Tensor       # [R, L] long: index of the utterance in the input list, -1 for padding
    n_real: int                 # real (non-pad) tokens

    def to(self, device: torch.device | str) -> "LMBatch":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in kw.items():
            if isinstance(v, torch.Tensor):
                kw[k] = v.to(device, non_blocking=True)
        return LMBatch(**kw)


def segment_targets(seg: Segment) -> tuple[np.ndarray, np.ndarray]:
    """Shifted targets and their kinds for one utterance (length L each)."""
    n = len(seg)
    if not 1 <= seg.n_prompt < n:
        raise ValueError(f"prompt length {seg.n_prompt} must be in 1..{n - 1}")
    targets = np.full(n, IGNORE, dtype=np.int64)
    kinds = np.zeros(n, dtype=np.uint8)
    targets[:-1] = seg.ids[1:]
    # Position i predicts token i+1: a prompt token (TEXT) while i+1 < n_prompt, then audio/stop.
    kinds[: seg.n_prompt - 1] = TEXT
    kinds[seg.n_prompt - 1 : n - 1] = AUDIO
    return targets, kinds


def _empty(rows: int, length: int):
    return (np.zeros((rows, length), np.int64), np.zeros((rows, length), np.int64),
            np.full((rows, length), IGNORE, np.int64), np.zeros((rows, length), np.uint8),
            np.full((rows, length), -1, np.int64))


def _batch(arrays, n_real: int) -> LMBatch:
    ids, pos, tgt, kinds, seg = arrays
    return LMBatch(torch.from_numpy(ids), torch.from_numpy(pos), torch.from_numpy(tgt),
                   torch.from_numpy(kinds), torch.from_numpy(seg), n_real)


def assign_rows(lengths: Sequence[int], row_length: int) -> list[list[int]]:
    """First-fit decreasing: segment indices per row, every row's total <= row_length."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = lengths[i]
        if n > row_length:
            raise UserError(f"a sequence of {n} tokens does not fit the packing row length {row_length} "
                            "(raise packing.row_length or filter long utterances)")
        for r, f in enumerate(free):
            if f >= n:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(row_length - n)
    return rows


def pack(segments: Sequence[Segment], row_length: int) -> LMBatch:
    """Pack utterances into rows of exactly ``row_length`` tokens. The tail of a row is padding laid out as
    one more segment (positions 0, 1, ...): it attends only to itself, is never attended and has no targets."""
    rows = assign_rows([len(s) for s in segments], row_length)
    ids, pos, tgt, kinds, seg = arrays = _empty(len(rows), row_length)
    for r, members in enumerate(rows):
        at = 0
        for i in sorted(members):  # input order inside a row: deterministic and easy to read
            s = segments[i]
            n = len(s)
            t, k = segment_targets(s)
            ids[r, at:at + n] = s.ids
            pos[r, at:at + n] = np.arange(n)
            tgt[r, at:at + n] = t
            kinds[r, at:at + n] = k
            seg[r, at:at + n] = i
            at += n
        pos[r, at:] = np.arange(row_length - at)
    return _batch(arrays, sum(len(s) for s in segments))


def pad(segments: Sequence[Segment], multiple: int = 8) -> LMBatch:
    """One utterance per row, right-padded to the longest (rounded up to ``multiple``). Positions are
    0..L-1 in every row, so the model uses a plain causal mask; pads sit after the real tokens and
    carry no targets, so they change nothing that is scored."""
    length = max(len(s) for s in segments)
    length = (length + multiple - 1) // multiple * multiple
    ids, pos, tgt, kinds, seg = arrays = _empty(len(segments), length)
    pos[:] = np.arange(length)
    for r, s in enumerate(segments):
        n = len(s)
        t, k = segment_targets(s)
        ids[r, :n], tgt[r, :n], kinds[r, :n], seg[r, :n] = s.ids, t, k, r
    return _batch(arrays, sum(len(s) for s in segments))
