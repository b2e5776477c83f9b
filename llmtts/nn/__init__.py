"""Neural building blocks shared by the codec and decoder stages (no distributed or I/O code here).

- ``vocos``: ``ConvNeXtBlock``, ``VocosBackbone``, ``ISTFT``, ``ISTFTHead`` (+ exact frame/sample arithmetic)
- ``discriminators``: ``MultiPeriodDiscriminator``, ``MultiResolutionDiscriminator``, ``CombinedDiscriminator``
- ``losses``: ``MultiResolutionMelLoss``, ``MultiResolutionSTFTLoss``, hinge/LSGAN ``generator_loss`` /
  ``discriminator_loss``, ``feature_matching_loss``; ``ReconstructionLoss`` (the weighted mel + STFT objective
  of the codec and decoder)
"""
from llmtts.nn.discriminators import CombinedDiscriminator, MultiPeriodDiscriminator, MultiResolutionDiscriminator
from llmtts.nn.losses import (
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    ReconstructionLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from llmtts.nn.vocos import ISTFT, ConvNeXtBlock, ISTFTHead, VocosBackbone, frames_for_samples, samples_for_frames

__all__ = [
    "CombinedDiscriminator", "ConvNeXtBlock", "ISTFT", "ISTFTHead", "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator", "MultiResolutionMelLoss", "MultiResolutionSTFTLoss", "ReconstructionLoss", "VocosBackbone",
    "discriminator_loss", "feature_matching_loss", "frames_for_samples", "generator_loss", "samples_for_frames",
]
