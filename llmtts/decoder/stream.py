"""A causal decoder run incrementally: states in, the samples no later state can change out.

Why: a stream that decodes windows (``llmtts.infer.stream.StreamDecoder``) recomputes the decoder's left context
for every chunk — 15 tokens for the causal soprano shapes, as much again as a 16-token chunk itself. With causal
convolutions nothing waits for the future but the upsampling (1 token) and the iSTFT overlap, so the stack can
carry its state instead: each convolution keeps its last ``k - 1`` input frames, the iSTFT its open overlap, and
every frame is computed once. The concatenated output equals ``HiddenDecoder.forward`` on all states (up to
summation order; tested).
"""
from __future__ import annotations

import torch
from torch import nn

from llmtts.decoder.model import HiddenDecoder


def can_stream(decoder: HiddenDecoder) -> bool:
    """Causal convolutions and the centred edge convention: what ``DecoderStream`` reproduces."""
    return decoder.cfg.conv_lookahead == 0 and decoder.cfg.edges == "centered"


class DecoderStream:
    def __init__(self, decoder: HiddenDecoder):
        if not can_stream(decoder):
            raise ValueError("incremental decoding needs a causal decoder (conv_lookahead: 0, edges: centered)")
        self.dec = decoder
        self.state: dict = {}
        self.tail: torch.Tensor | None = None  # the last 2 states received, [B, d, <= 2]: the upsampling's context
        self.received = 0  # states pushed so far
        self.framed = 0  # tokens whose frames went through the stack

    def _decode(self, frames: torch.Tensor, final: bool) -> torch.Tensor:
        x = self.dec.backbone(frames, self.state)
        return self.dec.head.istft.stream(self.dec.head.spectrum(x), self.state, final=final)

    @torch.inference_mode()
    def push(self, hidden: torch.Tensor, final: bool = False) -> torch.Tensor:
        """``hidden [B, n, d]`` (the next n states; n may be 0) -> ``[B, samples]`` newly final audio; ``final``: no
        more states come, the rest is returned too."""
        w = next(self.dec.backbone.parameters())
        new = hidden.to(w.dtype).transpose(1, 2)  # [B, d, n]
        window = new if self.tail is None else torch.cat([self.tail, new], -1)
        if window.shape[-1] == 0:  # nothing pushed yet
            return window.new_zeros(window.shape[0], 0, dtype=torch.float32)
        start = self.received - (0 if self.tail is None else self.tail.shape[-1])  # token index of window[..., 0]
        self.received += new.shape[-1]
        self.tail = window[..., -2:]
        # A token's frames need its neighbours (the linear upsampling): every token but the newest has them now;
        # the newest waits for its successor, or for the end (then clamped at the edge, as offline).
        count = (self.received if final else self.received - 1) - self.framed
        if count <= 0 and not final:
            return window.new_zeros(window.shape[0], 0, dtype=torch.float32)
        k = self.dec.cfg.upsample
        first = self.framed - start  # >= 1 (the left neighbour is in the window) unless it is the stream's start
        frames = nn.functional.interpolate(window, scale_factor=k, mode="linear", align_corners=False)
        frames = frames[..., first * k: (first + max(count, 0)) * k]
        self.framed += max(count, 0)
        return self._decode(frames, final)
