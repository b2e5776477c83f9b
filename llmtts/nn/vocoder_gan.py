"""One GAN step for waveform generators (the codec and the hidden-state decoder share it): the vocoder
objective's training step, beside its discriminators (``discriminators.py``) and losses (``losses.py``).

The discriminator is updated on real vs detached generated audio, then the generator on
reconstruction + adversarial + feature-matching losses through a frozen discriminator. Real and
generated audio go through the discriminator in one concatenated forward because DDP allows one
forward per backward.
"""
from __future__ import annotations

from typing import Callable

import torch

from llmtts.nn.losses import GanKind, discriminator_loss, feature_matching_loss, generator_loss


def vocoder_gan_step(ctx, wav: torch.Tensor, target: torch.Tensor,
                     recon_loss: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]], *,
                     train_disc: bool, use_adversarial: bool, kind: GanKind = "hinge", adv_weight: float = 1.0,
                     fm_weight: float = 2.0, gen: str = "gen", disc: str = "disc") -> dict[str, float]:
    """Run the discriminator step (if ``train_disc``) and the generator step; return float metrics.
    ``wav`` is the generator output (with grad), ``target`` the real audio, both ``[B, N]``.
    """
    metrics: dict[str, float] = {}
    n = target.shape[0]
    if train_disc:
        d = ctx.models[disc]
        with ctx.autocast():
            logits, _ = d(torch.cat([target, wav.detach().to(target.dtype)]))
            loss_d = discriminator_loss([lg[:n] for lg in logits], [lg[n:] for lg in logits], kind)
        ctx.backward(loss_d, disc)
        ctx.step(disc)
        metrics["loss_disc"] = loss_d.item()
    with ctx.autocast():
        loss, parts = recon_loss(wav, target)
        if use_adversarial:
            with ctx.frozen(disc):
                logits, fmaps = ctx.models[disc](torch.cat([target, wav.to(target.dtype)]))
            adv = generator_loss([lg[n:] for lg in logits], kind)
            fm = feature_matching_loss([[f[:n] for f in fs] for fs in fmaps], [[f[n:] for f in fs] for fs in fmaps])
            loss = loss + adv_weight * adv + fm_weight * fm
            metrics.update(adv=adv.item(), feature_matching=fm.item())
    ctx.backward(loss, gen)
    ctx.step(gen)
    metrics.update(parts)
    metrics["loss"] = loss.item()
    return metrics
