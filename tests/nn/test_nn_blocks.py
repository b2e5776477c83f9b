"""Shapes and exact frame/sample arithmetic of the shared building blocks, and loss behaviour."""
import math

import pytest
import torch

from llmtts.nn import (
    ISTFT,
    CombinedDiscriminator,
    ISTFTHead,
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    VocosBackbone,
    discriminator_loss,
    feature_matching_loss,
    frames_for_samples,
    generator_loss,
    samples_for_frames,
)


def test_backbone_keeps_frames_and_is_channels_last():
    bb = VocosBackbone(input_dim=12, dim=16, intermediate_dim=32, num_layers=2)
    for frames in (1, 7, 33):
        y = bb(torch.randn(3, 12, frames))
        assert y.shape == (3, frames, 16)
    with pytest.raises(ValueError, match=r"\[B, 12, F\]"):
        bb(torch.randn(3, 11, 5))


@pytest.mark.parametrize("n_fft,hop", [(2048, 512), (1024, 256), (640, 160)])
@pytest.mark.parametrize("frames", [1, 5, 17])
def test_istft_head_same_padding_gives_exactly_frames_times_hop(n_fft, hop, frames):
    head = ISTFTHead(dim=8, n_fft=n_fft, hop_length=hop, padding="same")
    wav = head(torch.randn(2, frames, 8))
    assert wav.shape == (2, frames * hop)
    assert torch.isfinite(wav).all()
    assert head.samples_for_frames(frames) == frames * hop
    assert head.frames_for_samples(frames * hop) == frames


def test_istft_center_padding_arithmetic():
    head = ISTFTHead(dim=8, n_fft=512, hop_length=128, padding="center")
    wav = head(torch.randn(1, 9, 8))
    assert wav.shape == (1, 8 * 128)
    assert samples_for_frames(9, 128, "center") == 8 * 128
    assert frames_for_samples(8 * 128, 128, "center") == 9
    with pytest.raises(ValueError, match="multiple of hop_length"):
        frames_for_samples(1000, 128)


def test_same_istft_inverts_a_matching_stft():
    # A "same"-framed STFT (pad (n_fft-hop)/2 each side) followed by ISTFT returns the signal in the interior.
    n_fft, hop, frames = 512, 128, 20
    x = torch.randn(1, frames * hop)
    pad = (n_fft - hop) // 2
    xp = torch.nn.functional.pad(x, (pad, pad))
    spec = torch.stft(xp, n_fft, hop, window=torch.hann_window(n_fft), center=False, return_complex=True)
    assert spec.shape[-1] == frames
    y = ISTFT(n_fft, hop, padding="same")(spec)
    assert y.shape == x.shape
    # The outermost samples are covered by a single, tapered window; compare away from the edges.
    inner = slice(n_fft, -n_fft)
    assert torch.allclose(y[:, inner], x[:, inner], atol=1e-4)


def test_mel_and_stft_losses_zero_on_identity_and_grow_with_noise():
    torch.manual_seed(0)
    t = torch.sin(torch.linspace(0, 400 * math.pi, 16000))[None].repeat(2, 1)
    mel = MultiResolutionMelLoss(16000, resolutions=((512, 128, 40), (1024, 256, 64)))
    stft = MultiResolutionSTFTLoss(resolutions=((512, 128, 512), (1024, 256, 1024)))
    assert mel(t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert stft(t, t).item() == pytest.approx(0.0, abs=1e-5)
    small, big = t + 0.01 * torch.randn_like(t), t + 0.3 * torch.randn_like(t)
    assert 0 < mel(small, t) < mel(big, t)
    assert 0 < stft(small, t) < stft(big, t)
    with pytest.raises(ValueError, match="same shape"):
        mel(t[:, :-1], t)


def test_discriminators_and_gan_losses():
    torch.manual_seed(0)
    disc = CombinedDiscriminator(periods=(2, 3), resolutions=((256, 64, 256), (128, 32, 128)), channels=4,
                                 max_channels=16)
    real, fake = torch.randn(2, 2000), torch.randn(2, 2000, requires_grad=True)
    lr, fr = disc(real)
    lf, ff = disc(fake)
    assert len(lr) == len(lf) == 4 and all(x.shape[0] == 2 for x in lr)
    assert all(len(a) == len(b) for a, b in zip(fr, ff))
    # Feature matching is zero on identical inputs, positive otherwise, and reaches the generator.
    assert feature_matching_loss(fr, disc(real)[1]).item() == pytest.approx(0.0, abs=1e-7)
    fm = feature_matching_loss(fr, ff)
    g = generator_loss(lf, "hinge") + fm
    g.backward()
    assert fm.item() > 0 and fake.grad is not None and fake.grad.abs().sum() > 0
    # Hinge/LSGAN on hand-made logits: perfect discriminator -> 0 hinge loss; LSGAN matches the formula.
    ones, neg = [torch.full((2, 3), 1.5)], [torch.full((2, 3), -1.5)]
    assert discriminator_loss(ones, neg, "hinge").item() == 0.0
    assert generator_loss(neg, "hinge").item() == pytest.approx(2.5)
    assert discriminator_loss(ones, neg, "lsgan").item() == pytest.approx(0.25 + 2.25)
    assert generator_loss(ones, "lsgan").item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown GAN"):
        generator_loss(ones, "wgan")
