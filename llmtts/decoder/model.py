"""The decoder: LLM hidden states ``[B, T, d]`` -> waveform ``[B, T * samples_per_token]``.

hidden [B, T, d] -> linear interpolation to ``T * upsample`` frames -> VocosBackbone -> ISTFTHead ("same").

Edge convention (docs/CONVENTIONS.md): T tokens <-> exactly ``T * samples_per_token`` samples. Token ``t``
owns samples ``[t * S, (t + 1) * S)``; its state sits at the centre of that span. The interpolation is
``align_corners=False``: frame ``f`` reads token position ``(f + 0.5) / upsample - 0.5``, so the ``upsample``
frames of token ``t`` are centred on its samples, and the first/last half token repeats the edge state
(Soprano instead stretches T states to ``4(T-1)+1`` frames and emits ``S (T-1)`` samples, dropping a token:
``edges: soprano`` builds exactly that, for decoders imported from Soprano; see ``output_samples``).

Receptive field (``receptive_field_tokens``): the output of token ``t`` depends on tokens
``t - R .. t + R`` only. R counts the interpolation (up to 1 token), the ConvNeXt stack (embed + blocks,
k=7 each: 3 frames per layer) and the iSTFT overlap (``n_fft / 2`` samples): R = 8 tokens (0.51 s) for
configs/decoder/soprano.yaml. Streaming decodes chunks with R tokens of
context on each side, so concatenated chunks equal the offline output. With ``conv_lookahead: 0`` (causal) the
convolutions see no future frames: (left, right) context (``context_tokens``) becomes (15, 1) tokens for those
shapes, so a stream waits for 1 token of look-ahead instead of 8 (configs/decoder/soprano-stream.yaml).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from llmtts.decoder.config import DecoderModelConfig
from llmtts.nn.vocos import ISTFTHead, VocosBackbone

def _conv_frames(cfg: DecoderModelConfig) -> tuple[int, int]:
    """Frames of (left, right) context of the conv stack (embed + one depthwise conv per block)."""
    kernels = [cfg.embed_kernel] + [cfg.dw_kernel] * cfg.num_layers
    right = [k // 2 if cfg.conv_lookahead < 0 else min(cfg.conv_lookahead, k // 2) for k in kernels]
    return sum(k - 1 - r for k, r in zip(kernels, right)), sum(right)


def _soprano_receptive_field(cfg: DecoderModelConfig) -> int:
    # Output sample n sits at n (frame f is centred on sample f * hop); token t owns samples [t S, (t + 1) S)
    # of the output (state t on its first sample). Frames within n_fft / 2 of a sample reach it.
    k, hop, win, spt = cfg.upsample, cfg.hop_length, cfg.n_fft, cfg.samples_per_token
    left, right = _conv_frames(cfg)
    f_lo = math.ceil((-(win // 2) + 1) / hop) - left
    f_hi = math.floor((spt - 1 + win // 2 - 1) / hop) + right
    # align_corners=True: frame f reads tokens floor(f / k) and ceil(f / k).
    return max(-math.floor(f_lo / k), math.ceil(f_hi / k), 0)


def context_tokens(cfg: DecoderModelConfig) -> tuple[int, int]:
    """Tokens of (left, right) context that can influence a token's samples (exact for this architecture): the
    output of token ``t`` depends on tokens ``t - left .. t + right`` only."""
    if cfg.edges == "soprano":
        r = _soprano_receptive_field(cfg)
        return r, r
    k, hop, win, spt = cfg.upsample, cfg.hop_length, cfg.n_fft, cfg.samples_per_token
    pad = (win - hop) // 2
    # Token 0 owns samples [0, spt - 1]. iSTFT frame f (after the "same" trim) writes samples
    # f*hop - pad + 1 .. f*hop - pad + win - 1 (the periodic Hann window is 0 at j = 0).
    f_lo = math.ceil((-(win - 1) + pad) / hop)
    f_hi = math.floor((spt - 2 + pad) / hop)
    left, right = _conv_frames(cfg)
    f_lo, f_hi = f_lo - left, f_hi + right
    # Linear interpolation (align_corners=False): frame f reads tokens around (f + 0.5) / k - 0.5.
    t_lo = math.floor((f_lo + 0.5) / k - 0.5)
    t_hi = math.ceil((f_hi + 0.5) / k - 0.5)
    return max(-t_lo, 0), max(t_hi, 0)


def receptive_field_tokens(cfg: DecoderModelConfig) -> int:
    """Tokens of context on the wider side (``context_tokens``; both sides alike for centred convolutions)."""
    return max(context_tokens(cfg))


class HiddenDecoder(nn.Module):
    def __init__(self, cfg: DecoderModelConfig):
        super().__init__()
        if not cfg.is_resolved:
            raise ValueError(f"decoder config with unset token facts (hidden_size, sample_rate, samples_per_token "
                             f"= 0: read from the training input by the stage): {cfg}")
        self.cfg = cfg
        self.backbone = VocosBackbone(cfg.hidden_size, cfg.dim, cfg.intermediate_dim, cfg.num_layers,
                                      embed_kernel=cfg.embed_kernel, dw_kernel=cfg.dw_kernel,
                                      lookahead=cfg.conv_lookahead)
        soprano = cfg.edges == "soprano"
        self.head = ISTFTHead(cfg.dim, cfg.n_fft, cfg.hop_length, padding="center" if soprano else "same",
                              zero_edge_bins=soprano)

    @property
    def samples_per_token(self) -> int:
        return self.cfg.samples_per_token

    @property
    def receptive_field(self) -> int:
        return receptive_field_tokens(self.cfg)

    @property
    def context(self) -> tuple[int, int]:
        """(left, right) tokens of context (``context_tokens``): streaming waits for ``right``."""
        return context_tokens(self.cfg)

    def output_samples(self, tokens: int) -> int:
        """Samples ``forward`` returns for ``tokens`` states: ``T * S``, or ``(T - 1) * S`` with Soprano's edges."""
        if self.cfg.edges == "soprano":
            return max(tokens - 1, 0) * self.cfg.samples_per_token
        return tokens * self.cfg.samples_per_token

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden [B, T, d]`` -> ``[B, output_samples(T)]`` float32."""
        if hidden.dim() != 3 or hidden.shape[-1] != self.cfg.hidden_size:
            raise ValueError(f"decoder expects hidden states [B, T, {self.cfg.hidden_size}], got {tuple(hidden.shape)}")
        if self.output_samples(hidden.shape[1]) == 0:
            return hidden.new_zeros(hidden.shape[0], 0, dtype=torch.float32)
        return self.head(self.backbone(self._frames(hidden)))

    def _frames(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[B, T, d]`` states -> ``[B, d, F]`` frames (the upsampling; ``edges`` decides the count)."""
        w = next(self.backbone.parameters())
        x = hidden.to(w.dtype).transpose(1, 2)  # [B, d, T]
        if self.cfg.edges == "soprano":
            return nn.functional.interpolate(x, size=self.cfg.upsample * (x.shape[-1] - 1) + 1, mode="linear",
                                             align_corners=True)
        return nn.functional.interpolate(x, scale_factor=self.cfg.upsample, mode="linear", align_corners=False)

    def forward_many(self, hiddens: list[torch.Tensor]) -> list[torch.Tensor]:
        """Several sentences' states (``[T_i, d]`` each, any lengths) in one backbone call: each is upsampled on
        its own, the frames are padded to a common length with every convolution seeing zeros past a sentence's
        end (``VocosBackbone(lengths=)``), and each sentence's frames go through the head alone — so each output
        equals ``forward`` of that sentence alone (up to the batched kernels' rounding). One call instead of
        ``len(hiddens)`` pays on a GPU; on a CPU the backbone is compute-bound and padding only adds work."""
        for h in hiddens:
            if h.dim() != 2 or h.shape[-1] != self.cfg.hidden_size:
                raise ValueError(f"decoder expects states [T, {self.cfg.hidden_size}] per sentence, got {tuple(h.shape)}")
        out: list[torch.Tensor | None] = [None] * len(hiddens)
        live = [i for i, h in enumerate(hiddens) if self.output_samples(h.shape[0]) > 0]
        for i in set(range(len(hiddens))) - set(live):
            out[i] = hiddens[i].new_zeros(0, dtype=torch.float32)
        if live:
            frames = [self._frames(hiddens[i][None])[0] for i in live]  # [d, F_i]
            lengths = torch.tensor([f.shape[-1] for f in frames])
            x = frames[0].new_zeros(len(live), frames[0].shape[0], int(lengths.max()))
            for b, f in enumerate(frames):
                x[b, :, : f.shape[-1]] = f
            feats = self.backbone(x, lengths=lengths)  # [B, F, dim]
            for b, i in enumerate(live):
                out[i] = self.head(feats[b: b + 1, : int(lengths[b])])[0]
        return out


def shard_precision(hidden: torch.Tensor) -> torch.Tensor:
    """Round states the way hidden shards store them (float16), back to float32.

    Training reads fp16 shards; the on-the-fly mode and inference pass their fp32 states through this, so
    the decoder sees bit-identical inputs in all three paths.
    """
    return hidden.to(torch.float16).to(torch.float32)
