"""Quantizers from ``vector-quantize-pytorch`` behind one small interface, plus codebook-use statistics.

Code layout (what ``encode`` writes to ``KEY.codes.npy``):

* ``fsq`` (one codebook of ``prod(levels)`` codes): ``codes[T]`` int, one token per frame. This is the only
  layout the LLM stage consumes (Soprano: levels [8, 8, 5, 5, 5] -> 8000 codes, audio ids 0..7999).
* ``residual_fsq`` (``num_quantizers`` codebooks of ``prod(levels)`` codes each): ``codes[T, Q]`` with
  column ``q`` the q-th residual stage (coarse to fine). Not consumed by the LLM stage (it would need
  ``Q`` tokens per frame or a ``prod(levels) ** Q`` vocabulary); use it for codec research / evaluation.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from vector_quantize_pytorch import FSQ, ResidualFSQ


class Quantizer(nn.Module):
    """``forward(z[B, T, dim]) -> (z_q[B, T, dim], codes)``; ``decode(codes) -> z_q``. ``dim = len(levels)``."""

    def __init__(self, kind: str, levels: list[int], num_quantizers: int = 1):
        super().__init__()
        self.kind, self.levels = kind, list(levels)
        self.dim = len(levels)
        self.codebook_size = int(math.prod(levels))
        if kind == "fsq":
            if num_quantizers != 1:
                raise ValueError("fsq has one codebook")
            self.q = FSQ(levels=list(levels))
            self.num_codebooks = 1
        elif kind == "residual_fsq":
            self.q = ResidualFSQ(levels=list(levels), num_quantizers=num_quantizers)
            self.num_codebooks = num_quantizers
        else:
            raise ValueError(f"unknown quantizer {kind!r} (fsq, residual_fsq)")

    @property
    def bits_per_token(self) -> float:
        return self.num_codebooks * math.log2(self.codebook_size)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # FSQ rounds in fp32 anyway; doing the whole thing in fp32 keeps codes identical under bf16 autocast.
        with torch.autocast(z.device.type, enabled=False):
            zq, codes = self.q(z.float())
        return zq, codes.long()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        self.check_codes(codes)
        codes = codes.long()
        if self.kind == "fsq":
            return self.q.indices_to_codes(codes)
        return self.q.get_output_from_indices(codes)

    def check_codes(self, codes: torch.Tensor) -> None:
        want = 2 if self.kind == "fsq" else 3
        if codes.dim() != want or (want == 3 and codes.shape[-1] != self.num_codebooks):
            layout = "[B, T]" if want == 2 else f"[B, T, {self.num_codebooks}]"
            raise ValueError(f"{self.kind} codes must be {layout}, got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must be in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]")


def codebook_usage(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Share of the codebook used and perplexity (exp of the code entropy) over all given codes.

    For residual codes ``[..., Q]`` the statistics are averaged over the Q codebooks.
    """
    codes = codes.detach().long().cpu()
    columns = [codes.reshape(-1)] if codes.dim() < 3 else [codes[..., q].reshape(-1) for q in range(codes.shape[-1])]
    use, ppl = 0.0, 0.0
    for col in columns:
        col = col[col >= 0]
        counts = torch.bincount(col, minlength=codebook_size).double()
        probs = counts / counts.sum().clamp(min=1)
        use += float((counts > 0).double().mean())
        ent = -(probs[probs > 0] * probs[probs > 0].log()).sum()
        ppl += float(ent.exp())
    return {"code_use": use / len(columns), "perplexity": ppl / len(columns)}


class CodebookMonitor:
    """Codebook use over the last ``window`` batches: one batch holds too few tokens to judge an 8000-code
    codebook (16 crops x 16 tokens = 256 tokens), so training logs this rolling view instead."""

    def __init__(self, codebook_size: int, window: int = 64):
        self.codebook_size, self.window = codebook_size, window
        self._counts: list[torch.Tensor] = []

    def update(self, codes: torch.Tensor) -> dict[str, float]:
        codes = codes.detach().long().cpu()
        cols = codes.reshape(-1, codes.shape[-1]) if codes.dim() >= 3 else codes.reshape(-1, 1)
        counts = torch.stack([torch.bincount(cols[:, q][cols[:, q] >= 0], minlength=self.codebook_size)
                              for q in range(cols.shape[1])])
        self._counts = (self._counts + [counts])[-self.window:]
        total = torch.stack(self._counts).sum(0).double()  # [Q, codebook_size]
        probs = total / total.sum(-1, keepdim=True).clamp(min=1)
        use = (total > 0).double().mean(-1)
        ent = -(probs * probs.clamp(min=1e-30).log()).sum(-1)
        return {"code_use": float(use.mean()), "perplexity": float(ent.exp().mean())}

    def state_dict(self) -> dict:
        return {"counts": torch.stack(self._counts)} if self._counts else {}

    def load_state_dict(self, state: dict) -> None:
        self._counts = list(state["counts"].unbind(0)) if "counts" in state else []
