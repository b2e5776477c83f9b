"""Reconstruction and adversarial losses for waveform generators.

* ``MultiResolutionMelLoss``: mean L1 between log-mel spectrograms (``llmtts.audio.LogMel``) at several
  STFT resolutions.
* ``MultiResolutionSTFTLoss``: spectral convergence + L1 on log magnitude, averaged over resolutions.
* GAN losses on the ``(logits, fmaps)`` lists the discriminators in ``llmtts.nn.discriminators`` return:
  ``discriminator_loss`` / ``generator_loss`` with ``kind="hinge"`` or ``"lsgan"``, and
  ``feature_matching_loss``.

Inputs are waveforms ``[B, N]`` of equal length; losses are scalar tensors.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from llmtts.audio import LogMel

GanKind = Literal["hinge", "lsgan"]


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")


class MultiResolutionMelLoss(nn.Module):
    """``resolutions``: (n_fft, hop_length, n_mels) triples."""

    def __init__(self, sample_rate: int,
                 resolutions: Sequence[Sequence[int]] = ((512, 128, 40), (1024, 256, 80), (2048, 512, 128))):
        super().__init__()
        self.mels = nn.ModuleList([LogMel(sample_rate, n_fft, hop, n_mels) for n_fft, hop, n_mels in resolutions])

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target)
        pred, target = pred.float(), target.float()
        return sum(nn.functional.l1_loss(m(pred), m(target)) for m in self.mels) / len(self.mels)


class MultiResolutionSTFTLoss(nn.Module):
    """``resolutions``: (n_fft, hop_length, win_length) triples. Returns ``sc + log_mag`` (see ``parts``)."""

    def __init__(self, resolutions: Sequence[Sequence[int]] = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))):
        super().__init__()
        self.resolutions = [tuple(r) for r in resolutions]
        for i, (_, _, win) in enumerate(self.resolutions):
            self.register_buffer(f"window{i}", torch.hann_window(win), persistent=False)

    def parts(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(spectral convergence, log-magnitude L1), each averaged over resolutions."""
        _check_pair(pred, target)
        pred, target = pred.float(), target.float()
        sc_total, mag_total = 0.0, 0.0
        for i, (n_fft, hop, win) in enumerate(self.resolutions):
            window = getattr(self, f"window{i}")
            p = torch.stft(pred, n_fft, hop, win, window, return_complex=True).abs().clamp(min=1e-7)
            t = torch.stft(target, n_fft, hop, win, window, return_complex=True).abs().clamp(min=1e-7)
            sc_total = sc_total + torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp(min=1e-7)
            mag_total = mag_total + nn.functional.l1_loss(torch.log(p), torch.log(t))
        n = len(self.resolutions)
        return sc_total / n, mag_total / n

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sc, mag = self.parts(pred, target)
        return sc + mag


def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor],
                       kind: GanKind = "hinge") -> torch.Tensor:
    """Push real logits up and fake logits down; summed over sub-discriminators, mean within each.

    Pass ``fake_logits`` computed on ``generated.detach()`` so the generator gets no gradient here.
    """
    total = 0.0
    for r, f in zip(real_logits, fake_logits, strict=True):
        if kind == "hinge":
            total = total + torch.relu(1 - r).mean() + torch.relu(1 + f).mean()
        elif kind == "lsgan":
            total = total + ((r - 1) ** 2).mean() + (f ** 2).mean()
        else:
            raise ValueError(f"unknown GAN loss kind {kind!r}")
    return total


def generator_loss(fake_logits: list[torch.Tensor], kind: GanKind = "hinge") -> torch.Tensor:
    total = 0.0
    for f in fake_logits:
        if kind == "hinge":
            total = total + torch.relu(1 - f).mean()
        elif kind == "lsgan":
            total = total + ((f - 1) ** 2).mean()
        else:
            raise ValueError(f"unknown GAN loss kind {kind!r}")
    return total


def feature_matching_loss(real_fmaps: list[list[torch.Tensor]], fake_fmaps: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean L1 between the discriminator's features on real (detached) and generated audio, averaged per
    sub-discriminator and summed over them (HiFi-GAN/Vocos style)."""
    total = 0.0
    for rs, fs in zip(real_fmaps, fake_fmaps, strict=True):
        total = total + sum(nn.functional.l1_loss(f, r.detach()) for r, f in zip(rs, fs, strict=True)) / len(rs)
    return total


def default_mel_resolutions(n_fft: int) -> list[list[int]]:
    """(n_fft, hop, n_mels) triples at 1/4, 1/2 and 1x the model's n_fft."""
    return [[n_fft // 4, n_fft // 16, 40], [n_fft // 2, n_fft // 8, 64], [n_fft, n_fft // 4, 100]]


def default_stft_resolutions(n_fft: int) -> list[list[int]]:
    """(n_fft, hop, win) triples at 1/4, 1/2 and 1x the model's n_fft."""
    return [[n, n // 4, n] for n in (n_fft // 4, n_fft // 2, n_fft)]


class ReconstructionLoss(nn.Module):
    """The waveform reconstruction objective shared by the codec and the hidden-state decoder:
    ``mel_weight * multi-res mel L1 + stft_weight * (spectral convergence + log-magnitude L1)``.
    Empty resolution lists are derived from ``n_fft`` (``default_*_resolutions``).
    """

    def __init__(self, sample_rate: int, n_fft: int, mel_resolutions: Sequence[Sequence[int]] = (),
                 stft_resolutions: Sequence[Sequence[int]] = (), mel_weight: float = 45.0, stft_weight: float = 1.0):
        super().__init__()
        self.mel_resolutions = [list(r) for r in mel_resolutions] or default_mel_resolutions(n_fft)
        self.stft_resolutions = [list(r) for r in stft_resolutions] or default_stft_resolutions(n_fft)
        self.mel_loss = MultiResolutionMelLoss(sample_rate, self.mel_resolutions)
        self.stft_loss = MultiResolutionSTFTLoss(self.stft_resolutions)
        self.mel_weight, self.stft_weight = mel_weight, stft_weight

    @property
    def longest_fft(self) -> int:
        return max(r[0] for r in self.mel_resolutions + self.stft_resolutions)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        mel = self.mel_loss(pred.float(), target.float())
        sc, mag = self.stft_loss.parts(pred.float(), target.float())
        loss = self.mel_weight * mel + self.stft_weight * (sc + mag)
        return loss, {"mel": mel.item(), "stft_sc": sc.item(), "stft_mag": mag.item()}
