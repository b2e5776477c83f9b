"""The codec training stage: reconstruction (multi-resolution mel + STFT), then adversarial (MPD + MRD,
feature matching) from ``gan.start_step`` on. Two optimizers: ``gen`` (the codec) and ``disc``.

Data: audio shards (``llmtts data shards``) read by ``llmtts.data.reader.ShardLoader``; every item is
resampled to the codec's rate and randomly cropped to ``data.crop_samples`` (rounded down to whole tokens;
shorter clips are zero-padded), so a batch is a dense ``[B, crop]`` tensor.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from llmtts.audio import resample
from llmtts.codec.config import CodecConfig
from llmtts.data.remote import location
from llmtts.codec.export import export_codec
from llmtts.codec.model import CodecModel, latent_range_penalty
from llmtts.codec.quantizer import CodebookMonitor, codebook_usage
from llmtts.errors import UserError
from llmtts.nn.discriminators import CombinedDiscriminator
from llmtts.nn.losses import ReconstructionLoss
from llmtts.nn.vocoder_gan import vocoder_gan_step
from llmtts.train.stage import Stage

log = logging.getLogger(__name__)


class CropAudio:
    """Reader transform: resample to ``sample_rate`` and cut a ``crop`` sample window (random or from the start).

    A class (not a closure) so DataLoader workers can pickle it.
    """

    def __init__(self, sample_rate: int, crop: int, seed: int, random: bool = True):
        self.sample_rate, self.crop, self.seed, self.random = sample_rate, crop, seed, random

    def __call__(self, sample: dict) -> dict | None:
        wav = resample(sample["audio"], int(sample["sample_rate"]), self.sample_rate)
        if wav.size == 0:
            return None
        if len(wav) > self.crop:
            if self.random:
                # The reader's per-(seed, epoch, key) seed, not a stream per worker: a resumed run (which
                # replays its epoch in fresh workers) cuts exactly the crops the uninterrupted run cut.
                rng = np.random.default_rng([self.seed, int(sample.get("__seed__", 0)), 0xC0DEC])
                start = int(rng.integers(0, len(wav) - self.crop + 1))
            else:
                start = 0
            wav = wav[start: start + self.crop]
        elif len(wav) < self.crop:
            wav = np.pad(wav, (0, self.crop - len(wav)))
        return {"__key__": sample["__key__"], "audio": wav.astype(np.float32)}


class CropLength:
    def __init__(self, crop: int):
        self.crop = crop

    def __call__(self, sample: dict) -> int:
        return self.crop


def collate_audio(items: list[dict]) -> torch.Tensor:
    return torch.from_numpy(np.stack([it["audio"] for it in items]))


class CodecStage(Stage):
    name = "codec"
    unit = "audio_s"

    def __init__(self, cfg: CodecConfig, run_dir: Path, input_dir: str | Path | None = None):
        super().__init__(cfg, run_dir)
        self.input_dir = location(input_dir) if input_dir is not None else None
        m = cfg.model
        self.crop = (cfg.data.crop_samples // m.samples_per_token) * m.samples_per_token
        if self.crop < m.samples_per_token:
            raise UserError(f"data.crop_samples={cfg.data.crop_samples} is shorter than one token "
                            f"(model.samples_per_token={m.samples_per_token})")
        if self.crop > cfg.data.batch_budget:
            raise UserError(f"data.batch_budget={cfg.data.batch_budget} cannot hold one crop of {self.crop} samples")
        self.recon_loss = ReconstructionLoss(m.sample_rate, m.n_fft, cfg.loss.mel_resolutions,
                                             cfg.loss.stft_resolutions, cfg.loss.mel_weight, cfg.loss.stft_weight)
        # Losses and the MRD use torch.stft(center=True), which reflect-pads n_fft / 2 on each side.
        longest = max([self.recon_loss.longest_fft] + [r[0] for r in cfg.gan.resolutions])
        if self.crop <= longest // 2:
            raise UserError(f"data.crop_samples={cfg.data.crop_samples} must be longer than half the largest "
                            f"loss/discriminator n_fft ({longest})")
        self._preview: tuple[torch.Tensor, torch.Tensor] | None = None
        self._monitor: CodebookMonitor | None = None  # rolling codebook use over recent training batches

    @property
    def gan_enabled(self) -> bool:
        return self.cfg.gan.start_step >= 0

    # --- models -------------------------------------------------------------------------------
    def build_models(self) -> dict[str, nn.Module]:
        models: dict[str, nn.Module] = {"gen": CodecModel(self.cfg.model)}
        if self.gan_enabled:
            models["disc"] = CombinedDiscriminator.from_config(self.cfg.gan, self.cfg.model.n_fft)
        return models

    def parallelize(self, models: dict[str, nn.Module], pctx: Any) -> dict[str, nn.Module]:
        from llmtts.codec.parallelize import parallelize_codec

        return parallelize_codec(models, pctx)

    def optimizer_groups(self) -> dict[str, list[str]]:
        groups = {"gen": ["gen"]}
        if self.gan_enabled:
            groups["disc"] = ["disc"]
        return groups

    def optimizer_overrides(self) -> dict[str, dict]:
        return {"disc": {"lr": self.cfg.gan.disc_lr}} if self.gan_enabled else {}

    # --- data ---------------------------------------------------------------------------------
    def _require_input(self) -> Path:
        if self.input_dir is None:
            raise UserError("codec training needs --input-dir SHARDS (audio shards from `llmtts data shards`)")
        return self.input_dir

    def _loader(self, split: str, rank: int, world_size: int, train: bool):
        from llmtts.data.reader import ShardLoader

        d = self.cfg.data
        transform = CropAudio(self.cfg.model.sample_rate, self.crop, d.seed + 7919 * rank, random=train)
        return ShardLoader.from_config(self._require_input(), split, rank, world_size, d, train=train,
                                       length_fn=CropLength(self.crop), collate_fn=collate_audio,
                                       fields=["audio"], transform=transform)

    def train_data(self, rank: int, world_size: int):
        return self._loader(self.cfg.data.train_split, rank, world_size, train=True)

    def val_data(self, rank: int, world_size: int):
        try:
            return self._loader(self.cfg.data.val_split, rank, world_size, train=False)
        except UserError as exc:  # no validation split: train without evaluation
            log.warning("codec: no validation data (%s)", exc)
            return None

    def units_in_batch(self, batch: torch.Tensor) -> float:
        return batch.numel() / self.cfg.model.sample_rate

    # --- steps --------------------------------------------------------------------------------
    def _recon_losses(self, out, ctx) -> tuple[torch.Tensor, dict[str, float]]:
        return self._generator_loss(out, ctx)(out.wav, out.target)

    def _generator_loss(self, out, ctx):
        """The reconstruction loss plus the latent range penalty (config.CodecLossConfig.latent_range_weight)."""
        recon, lc = self.recon_loss.to(ctx.device), self.cfg.loss

        def loss(wav: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
            total, parts = recon(wav, target)
            if lc.latent_range_weight > 0 and out.latent is not None:
                penalty = latent_range_penalty(out.latent, lc.latent_bound)
                total = total + lc.latent_range_weight * penalty
                parts["latent_range"] = penalty.item()
            return total, parts
        return loss

    def gan_active(self, step: int) -> bool:
        return self.gan_enabled and step >= self.cfg.gan.start_step

    def train_step(self, batch: torch.Tensor, ctx) -> dict[str, float]:
        wav = batch.to(ctx.device, non_blocking=True)
        g = self.cfg.gan
        use_gan = self.gan_active(ctx.global_step)
        with ctx.autocast():
            out = ctx.models["gen"](wav)
        metrics = vocoder_gan_step(ctx, out.wav, out.target, self._generator_loss(out, ctx),
                                   train_disc=use_gan, use_adversarial=use_gan, kind=g.kind,
                                   adv_weight=g.adv_weight, fm_weight=g.fm_weight)
        if self._monitor is None:
            self._monitor = CodebookMonitor(self._codebook_size(ctx))
        metrics.update(self._monitor.update(out.codes))
        return metrics

    def state_dict(self) -> dict:
        # The rolling codebook window: without it a resumed run would log other code_use / perplexity values.
        return {"codebook_monitor": self._monitor.state_dict()} if self._monitor is not None else {}

    def load_state_dict(self, state: dict) -> None:
        counts = state.get("codebook_monitor", {}).get("counts")
        if counts is not None:
            self._monitor = CodebookMonitor(int(counts.shape[-1]))
            self._monitor.load_state_dict(state["codebook_monitor"])

    def _codebook_size(self, ctx) -> int:
        return ctx.unwrap("gen").quantizer.codebook_size

    @torch.no_grad()
    def eval_step(self, batch: torch.Tensor, ctx) -> dict[str, float]:
        wav = batch.to(ctx.device)
        with ctx.autocast():
            out = ctx.models["gen"](wav)
        loss, parts = self._recon_losses(out, ctx)
        if self._preview is None:
            self._preview = (out.target[0].float().cpu(), out.wav[0].float().cpu())
        parts["loss"] = loss.item()
        parts.update(codebook_usage(out.codes, self._codebook_size(ctx)))
        return parts

    def on_eval_end(self, ctx, step: int) -> None:
        if self._preview is None:
            return
        target, recon = self._preview
        self._preview = None
        ctx.logger.log_audio_comparison("codec", {"target": target, "reconstruction": recon}, self.cfg.model.sample_rate,
                                        step, spectrogram=self.recon_loss.mel_loss.mels[-1].cpu())

    # --- export -------------------------------------------------------------------------------
    def export(self, models: dict[str, nn.Module], out_dir: Path) -> None:
        export_codec(models["gen"], out_dir)
