"""LM losses on pre-shifted targets (see ``packing.py``): speech loss + weighted text loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from llmtts.llm.packing import AUDIO, IGNORE, TEXT, LMBatch


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy [R, L] (0 where target is IGNORE), computed in fp32."""
    ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="none")
    return ce.view(targets.shape)


def lm_loss(logits: torch.Tensor, batch: LMBatch, text_weight: float,
            audio_range: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """``loss = mean CE over audio targets (a1..aN, stop) + text_weight * mean CE over text targets``.

    Also returns metrics: ``loss_audio``, ``loss_text``, ``audio_acc`` (greedy accuracy on audio-code
    targets, ``audio_range`` = [first, end) of the audio ids, so the stop is scored apart), ``stop_acc``.
    """
    ce = token_losses(logits, batch.targets)
    audio = batch.kinds == AUDIO
    text = batch.kinds == TEXT
    n_audio = audio.sum().clamp(min=1)
    n_text = text.sum().clamp(min=1)
    loss_audio = (ce * audio).sum() / n_audio
    loss_text = (ce * text).sum() / n_text
    loss = loss_audio + text_weight * loss_text if text_weight > 0 else loss_audio
    with torch.no_grad():
        pred = logits.argmax(-1)
        correct = (pred == batch.targets)
        metrics = {"loss_audio": float(loss_audio), "loss_text": float(loss_text)}
        if audio_range is not None:
            codes = audio & (batch.targets >= audio_range[0]) & (batch.targets < audio_range[1])
            stops = audio & ~codes
            metrics["audio_acc"] = float((correct & codes).sum() / codes.sum().clamp(min=1))
            metrics["stop_acc"] = float((correct & stops).sum() / stops.sum().clamp(min=1))
    return loss, metrics
