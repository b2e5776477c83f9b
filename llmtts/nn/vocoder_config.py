"""The vocoder objective's knobs, named once for the codec and the hidden-state decoder (both train a Vocos
generator with the same reconstruction losses and the same discriminators, ``vocoder_gan.py``).

Each stage subclasses these with its own defaults (the codec trains from scratch with a lighter mel weight and
a 512-wide MPD; the decoder fine-tunes from a reconstruction init with Vocos' 45 and 1024) and adds only what
differs in meaning: when adversarial training starts (``codec.gan.start_step``: no discriminator before it;
``decoder.gan.disc_warmup_steps``: the discriminator trains, the generator ignores it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ReconLossConfig:
    mel_weight: float = 45.0
    stft_weight: float = 1.0
    # (n_fft, hop, n_mels) and (n_fft, hop, win) triples; empty = derived from the model's n_fft.
    mel_resolutions: list[list[int]] = field(default_factory=list)
    stft_resolutions: list[list[int]] = field(default_factory=list)


@dataclass
class VocoderGanConfig:
    kind: Literal["hinge", "lsgan"] = "hinge"
    adv_weight: float = 1.0
    fm_weight: float = 2.0  # feature matching
    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])  # multi-period discriminator
    # (n_fft, hop, win) triples for the multi-resolution discriminator; empty = derived from the model's n_fft.
    resolutions: list[list[int]] = field(default_factory=list)
    channels: int = 32
    max_channels: int = 1024  # the MPD's widest layer
    disc_lr: float = 2e-4
