"""The codec: waveform <-> discrete tokens, one token per ``samples_per_token`` samples.

::

    wav [B, N]  --right-pad with zeros-->  [B, T * spt]          T = ceil(N / spt)
      -> log-mel, "same" framing       [B, n_mels, T * r]        r = spt / hop (frames per token)
      -> ConvNeXt (frame rate)         [B, enc_dim, T * r]
      -> strided Conv1d (k = s = r)    [B, enc_dim, T]           learned downsampling, no frame dropping
      -> ConvNeXt (token rate) -> Linear -> quantizer           codes [B, T] (fsq) or [B, T, Q]
    codes -> Linear -> ConvTranspose1d (k = s = r) -> Vocos backbone -> iSTFT head ("same")
      -> wav_hat [B, T * spt]                                    exactly T * samples_per_token samples

"Same" framing: the mel STFT pads ``(n_fft - hop) / 2`` zeros on each side, so ``M`` samples give exactly
``M / hop`` frames, and frame ``f`` covers the samples around ``f * hop + hop / 2`` — the mirror of the
iSTFT head.

Batching is exact: ``encode(wav, lengths)`` masks everything past each clip's own ``T_i * r`` frames, so a
clip's codes do not depend on what it was batched with (up to float summation order).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from llmtts.audio import LogMel
from llmtts.codec.config import CodecModelConfig
from llmtts.codec.quantizer import Quantizer
from llmtts.nn.vocos import ConvNeXtBlock, ISTFTHead, VocosBackbone


def num_tokens(num_samples: int, samples_per_token: int) -> int:
    """T = ceil(N / samples_per_token); an empty clip has 0 tokens."""
    return -(-int(num_samples) // samples_per_token)


class MaskedConvNeXtStack(nn.Module):
    """Embedding conv + ConvNeXt blocks that zero the frames past each item's length before every
    time-mixing conv, so padding in a batch acts exactly like the convs' own zero padding."""

    def __init__(self, input_dim: int, dim: int, intermediate_dim: int, num_layers: int):
        super().__init__()
        self.embed = nn.Conv1d(input_dim, dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList([ConvNeXtBlock(dim, intermediate_dim, 1.0 / max(num_layers, 1))
                                     for _ in range(num_layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, C, F]``, ``mask [B, 1, F]`` (1 = valid) -> ``[B, dim, F]`` (masked)."""
        m = (lambda t: t * mask) if mask is not None else (lambda t: t)
        x = self.embed(m(x))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(m(x))
        return m(x)


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return (torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(1).float()


@dataclass
class CodecOutput:
    wav: torch.Tensor  # [B, T * spt] reconstruction
    codes: torch.Tensor  # [B, T] or [B, T, Q]
    target: torch.Tensor  # [B, T * spt] the zero-padded input the reconstruction is compared to
    latent: torch.Tensor | None = None  # [B, T, q_dim] the pre-quantizer latent (for the range penalty)


class CodecModel(nn.Module):
    def __init__(self, cfg: CodecModelConfig):
        super().__init__()
        self.cfg = cfg
        self.sample_rate = cfg.sample_rate
        self.samples_per_token = cfg.samples_per_token
        self.hop_length = cfg.hop_length
        self.frames_per_token = cfg.frames_per_token
        r = self.frames_per_token
        self.mel = LogMel(cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels, center=False)
        self.encoder = MaskedConvNeXtStack(cfg.n_mels, cfg.encoder_dim, cfg.encoder_intermediate_dim, cfg.encoder_layers)
        self.downsample = nn.Conv1d(cfg.encoder_dim, cfg.encoder_dim, kernel_size=r, stride=r)
        self.token_encoder = MaskedConvNeXtStack(cfg.encoder_dim, cfg.encoder_dim, cfg.encoder_intermediate_dim,
                                                 cfg.encoder_token_layers)
        self.quantizer = Quantizer(cfg.quantizer, cfg.levels, cfg.num_quantizers)
        self.to_latent = nn.Linear(cfg.encoder_dim, self.quantizer.dim)
        self.from_latent = nn.Linear(self.quantizer.dim, cfg.decoder_dim)
        self.upsample = nn.ConvTranspose1d(cfg.decoder_dim, cfg.decoder_dim, kernel_size=r, stride=r)
        self.decoder = VocosBackbone(cfg.decoder_dim, cfg.decoder_dim, cfg.decoder_intermediate_dim, cfg.decoder_layers)
        self.head = ISTFTHead(cfg.decoder_dim, cfg.n_fft, cfg.hop_length, padding="same")

    # --- arithmetic ---------------------------------------------------------------------------
    def num_tokens(self, num_samples: int) -> int:
        return num_tokens(num_samples, self.samples_per_token)

    def pad_to_tokens(self, wav: torch.Tensor) -> torch.Tensor:
        """Right-pad ``[B, N]`` with zeros to ``T * samples_per_token`` samples."""
        n = wav.shape[-1]
        return nn.functional.pad(wav, (0, self.num_tokens(n) * self.samples_per_token - n))

    @property
    def tokens_per_second(self) -> float:
        return self.sample_rate / self.samples_per_token

    # --- encoder ------------------------------------------------------------------------------
    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T * spt]`` -> log-mel ``[B, n_mels, T * r]`` with "same" framing."""
        pad = (self.cfg.n_fft - self.hop_length) // 2
        return self.mel(nn.functional.pad(wav.float(), (pad, pad)))

    def encode_latent(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``wav [B, N]`` (zero-padded batch; ``lengths`` in samples, default N) -> latent ``[B, T, q_dim]``."""
        if wav.dim() != 2:
            raise ValueError(f"codec expects a waveform batch [B, N], got {tuple(wav.shape)}")
        wav = self.pad_to_tokens(wav)
        tokens = wav.shape[-1] // self.samples_per_token
        feats = self.features(wav)
        mask_f = mask_t = None
        if lengths is not None:
            tok_len = -(-lengths.to(wav.device).long() // self.samples_per_token)
            mask_f = length_mask(tok_len * self.frames_per_token, feats.shape[-1])
            mask_t = length_mask(tok_len, tokens)
        x = self.encoder(feats, mask_f)
        x = self.downsample(x)  # [B, enc_dim, T]; k = s = r never mixes tokens
        x = self.token_encoder(x, mask_t)
        return self.to_latent(x.transpose(1, 2))

    def encode(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``wav [B, N]`` -> codes ``[B, T]`` (fsq) or ``[B, T, Q]``; clip i's codes are ``[:ceil(len_i/spt)]``."""
        _, codes = self.quantizer(self.encode_latent(wav, lengths))
        return codes

    # --- decoder ------------------------------------------------------------------------------
    def decode_latent(self, zq: torch.Tensor) -> torch.Tensor:
        """Quantized latent ``[B, T, q_dim]`` -> waveform ``[B, T * samples_per_token]``."""
        x = self.from_latent(zq).transpose(1, 2)
        x = self.upsample(x)  # [B, dec_dim, T * r]
        return self.head(self.decoder(x))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, T]`` / ``[B, T, Q]`` -> waveform ``[B, T * samples_per_token]``."""
        return self.decode_latent(self.quantizer.decode(codes))

    def forward(self, wav: torch.Tensor) -> CodecOutput:
        target = self.pad_to_tokens(wav)
        z = self.encode_latent(target)
        zq, codes = self.quantizer(z)
        return CodecOutput(wav=self.decode_latent(zq), codes=codes, target=target, latent=z)


def latent_range_penalty(z: torch.Tensor, bound: float) -> torch.Tensor:
    """``mean(relu(|z| - bound)^2)``: zero while the latent stays where the quantizer's levels are reachable."""
    return torch.relu(z.float().abs() - bound).square().mean()
