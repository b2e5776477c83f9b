"""Next-token sampling with one random generator per sequence.

Each sequence in a batch draws exactly one uniform number per step from its *own* generator, so a
sequence's tokens depend only on its seed and its logits — never on which other sequences share the
batch. That is what makes ``synthesize_batch(texts)`` equal ``[synthesize(t) for t in texts]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from llmtts.errors import UserError


# Above this, sampling is indistinguishable from uniform noise over the codes (logits of a trained model span
# ~10-30 nats): a value that large is a client's mistake, refused rather than turned into noise.
MAX_TEMPERATURE = 10.0


@dataclass
class SamplingConfig:
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 0  # 0 = off
    repetition_penalty: float = 1.2
    # The penalty looks at this many most recent audio tokens (0 = all); audio repeats naturally
    # (silence, steady vowels), so penalising the whole history hurts long sentences.
    repetition_window: int = 64
    # Soprano's runtime (Hugging Face ``generate``), for imported Soprano models (inference.json sets both):
    # 1 = the repetition penalty also covers the prompt's ids (so [stop] is penalised from the first step);
    penalize_prompt: int = 0
    # 1 = choose among every output row, not only [stop] + audio ids (a non-audio id is fed back and its
    # state decoded like an audio token's, as Soprano does).
    full_vocab: int = 0

    def validate(self) -> "SamplingConfig":
        # "not x >= 0" also refuses NaN; a huge temperature divides every logit to ~0 (uniform noise, not a choice).
        if not 0 <= self.temperature <= MAX_TEMPERATURE:
            raise UserError(f"temperature must be in [0, {MAX_TEMPERATURE:g}] (0 = greedy), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise UserError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 1.0 <= self.repetition_penalty < math.inf:
            raise UserError(f"repetition_penalty must be >= 1.0 and finite, got {self.repetition_penalty}")
        if self.repetition_window < 0:
            raise UserError(f"repetition_window must be >= 0, got {self.repetition_window}")
        for key in ("penalize_prompt", "full_vocab"):
            if getattr(self, key) not in (0, 1):
                raise UserError(f"{key} must be 0 or 1, got {getattr(self, key)}")
        return self


def apply_repetition_penalty(logits: torch.Tensor, history: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty on ``logits [B, V]`` for the ids in ``history [B, H]``.

    Slots of ``history`` equal to ``V`` (the width of ``logits``) are padding and have no effect.
    """
    if penalty == 1.0 or history.numel() == 0:
        return logits
    # An extra dummy column absorbs the padding slots, so no per-row Python loop is needed.
    ext = torch.cat([logits, logits.new_zeros(logits.shape[0], 1)], dim=1)
    picked = torch.gather(ext, 1, history)
    ext = ext.scatter(1, history, torch.where(picked > 0, picked / penalty, picked * penalty))
    return ext[:, :-1]


# Candidates per side for ``top_p_filter`` before it sorts the whole row (sorting soprano's 8001 logits took
# ~0.5 ms of a ~15 ms int8 step on a 2-core EPYC; a top-k of 256 / 1024 takes 30 / 75 us).
TOP_P_HEAD, TOP_P_TAIL = 256, 1024


def filter_logits(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Temperature, top-k and top-p on ``logits [B, V]`` (float32); returns filtered logits."""
    logits = logits / max(cfg.temperature, 1e-5)
    if cfg.top_k and cfg.top_k < logits.shape[-1]:
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p < 1.0:
        logits = top_p_filter(logits, cfg.top_p)
    return logits


def top_p_sorted(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering by sorting the whole row: an id is dropped when the mass of the ids before it (in
    descending order) already reaches ``top_p`` (so the best id always stays)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    drop = (probs.cumsum(-1) - probs) >= top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """``top_p_sorted`` without sorting the whole row where one side decides it (same ids kept, up to float
    rounding of the masses at the boundary and which of several tied logits counts as first — the same
    distribution either way): when the ``TOP_P_HEAD`` best ids of every row hold ``top_p`` of the
    mass, every id after them is dropped and only they need ordering; when the ``TOP_P_TAIL`` worst ids hold more
    than ``1 - top_p``, every id before them is kept, and an id among them is dropped when it and the ids after it
    hold at most ``1 - top_p``. Otherwise (or for a short row) the whole row is sorted."""
    V = logits.shape[-1]
    if V <= 2 * TOP_P_TAIL:
        return top_p_sorted(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    vals, idx = torch.topk(logits, TOP_P_HEAD, dim=-1)  # descending
    p = probs.gather(1, idx)
    if bool((p.sum(-1) >= top_p).all()):
        drop = (p.cumsum(-1) - p) >= top_p
        return torch.full_like(logits, float("-inf")).scatter(1, idx, vals.masked_fill(drop, float("-inf")))
    vals, idx = torch.topk(logits, TOP_P_TAIL, dim=-1, largest=False)  # ascending
    p = probs.gather(1, idx)
    if bool((p.sum(-1) > 1.0 - top_p).all()):
        drop = p.cumsum(-1) <= 1.0 - top_p  # mass of this id and every worse one
        return logits.scatter(1, idx, vals.masked_fill(drop, float("-inf")))
    return top_p_sorted(logits, top_p)


def sample_next(logits: torch.Tensor, cfg: SamplingConfig, generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row of ``logits [B, V]``; row i uses ``generators[i]`` (one uniform per step)."""
    logits = logits.float()
    if cfg.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(filter_logits(logits, cfg), dim=-1)
    u = torch.cat([torch.rand(1, generator=g) for g in generators]).to(probs.device)
    cdf = probs.cumsum(-1)
    # Inverse-CDF sampling (right=True never lands on a zero-probability id); the clamp guards rounding.
    idx = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return idx.clamp_max(probs.shape[-1] - 1)
