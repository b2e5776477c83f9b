"""GAN discriminators for waveform generators: multi-period (HiFi-GAN) and multi-resolution (UnivNet/Vocos).

Every discriminator maps a waveform ``[B, N]`` to ``(logits, fmaps)``: one logit tensor per
sub-discriminator and, per sub-discriminator, the list of its intermediate feature maps (for the
feature-matching loss). Call it once on real audio and once on generated audio (or on both concatenated
along the batch) and feed the results to ``llmtts.nn.losses``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Outputs = tuple[list[torch.Tensor], list[list[torch.Tensor]]]



def _conv_stack(x: torch.Tensor, convs: nn.ModuleList, conv_post: nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """LeakyReLU conv stack + output conv -> (flattened logits, feature maps of every layer)."""
    fmaps = []
    for conv in convs:
        x = nn.functional.leaky_relu(conv(x), 0.1)
        fmaps.append(x)
    x = conv_post(x)
    fmaps.append(x)
    # A fresh tensor, not a view: FSDP2 attaches its backward hook to module outputs.
    return x.flatten(1).clone(), fmaps


def _run_all(discriminators: nn.ModuleList, wav: torch.Tensor) -> Outputs:
    logits, fmaps = [], []
    for d in discriminators:
        lg, fm = d(wav)
        logits.append(lg)
        fmaps.append(fm)
    return logits, fmaps

class PeriodDiscriminator(nn.Module):
    """Folds the waveform into ``[B, 1, N / period, period]`` and applies 2-D convs along time only."""

    def __init__(self, period: int, channels: int = 32, max_channels: int = 1024, num_layers: int = 4):
        super().__init__()
        self.period = period
        layers, c_in = [], 1
        for i in range(num_layers):
            c_out = min(channels * 4 ** i, max_channels)
            layers.append(weight_norm(nn.Conv2d(c_in, c_out, (5, 1), (3, 1), padding=(2, 0))))
            c_in = c_out
        layers.append(weight_norm(nn.Conv2d(c_in, c_in, (5, 1), 1, padding=(2, 0))))
        self.convs = nn.ModuleList(layers)
        self.conv_post = weight_norm(nn.Conv2d(c_in, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = wav.unsqueeze(1)
        b, c, n = x.shape
        if n % self.period:
            x = nn.functional.pad(x, (0, self.period - n % self.period), mode="reflect" if n > self.period else "constant")
        x = x.view(b, c, -1, self.period)
        return _conv_stack(x, self.convs, self.conv_post)


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: tuple[int, ...] | list[int] = (2, 3, 5, 7, 11), channels: int = 32,
                 max_channels: int = 1024):
        super().__init__()
        self.discriminators = nn.ModuleList([PeriodDiscriminator(p, channels, max_channels) for p in periods])

    def forward(self, wav: torch.Tensor) -> Outputs:
        return _run_all(self.discriminators, wav)


class ResolutionDiscriminator(nn.Module):
    """2-D convs over the magnitude spectrogram ``[B, 1, frames, bins]`` at one STFT resolution."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, channels: int = 32):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, channels, (7, 5), (2, 2), padding=(3, 2))),
            weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 1), padding=(2, 1))),
            weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 2), padding=(2, 1))),
            weight_norm(nn.Conv2d(channels, channels, 3, (2, 1), padding=1)),
            weight_norm(nn.Conv2d(channels, channels, 3, (2, 2), padding=1)),
        ])
        self.conv_post = weight_norm(nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav.float(), self.n_fft, self.hop_length, self.win_length, self.window,
                          center=True, return_complex=True).abs()
        x = spec.transpose(1, 2).unsqueeze(1)  # [B, 1, frames, bins]
        return _conv_stack(x, self.convs, self.conv_post)


class MultiResolutionDiscriminator(nn.Module):
    """``resolutions``: (n_fft, hop_length, win_length) triples."""

    def __init__(self, resolutions: tuple | list = ((2048, 512, 2048), (1024, 256, 1024), (512, 128, 512)),
                 channels: int = 32):
        super().__init__()
        self.discriminators = nn.ModuleList([ResolutionDiscriminator(*r, channels=channels) for r in resolutions])

    def forward(self, wav: torch.Tensor) -> Outputs:
        return _run_all(self.discriminators, wav)


class CombinedDiscriminator(nn.Module):
    """MPD + MRD as one module (one optimizer, one forward): outputs are concatenated lists."""

    def __init__(self, periods=(2, 3, 5, 7, 11), resolutions=((2048, 512, 2048), (1024, 256, 1024), (512, 128, 512)),
                 channels: int = 32, max_channels: int = 1024):
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(periods, channels, max_channels)
        self.mrd = MultiResolutionDiscriminator(resolutions, channels)

    @classmethod
    def from_config(cls, gan, n_fft: int) -> "CombinedDiscriminator":
        """From a stage's ``gan`` section (``periods``, ``resolutions``, ``channels``, ``max_channels``: the codec's
        and the decoder's share these names); empty ``resolutions`` = 1/4, 1/2 and 1x the generator's ``n_fft``."""
        from llmtts.nn.losses import default_stft_resolutions

        res = gan.resolutions or default_stft_resolutions(n_fft)
        return cls(periods=tuple(gan.periods), resolutions=tuple(tuple(r) for r in res), channels=gan.channels,
                   max_channels=gan.max_channels)

    def forward(self, wav: torch.Tensor) -> Outputs:
        l1, f1 = self.mpd(wav)
        l2, f2 = self.mrd(wav)
        return l1 + l2, f1 + f2
