"""The decoder training stage (stage 3): LLM hidden states -> waveform.

* ``stage: recon``: multi-resolution mel L1 + multi-resolution STFT (spectral convergence + log magnitude) on
  long crops (``recon_crop_tokens``).
* ``stage: gan``: the same plus MPD + MRD discriminators (hinge or LSGAN) and feature matching on short
  random crops (``gan_crop_tokens``), starting from a recon run (``init_from``). The discriminator and its
  optimizer are trained models of the core, so they are checkpointed and resumed with everything else.

Inputs come from hidden shards, or — on-the-fly mode, ``llm_path`` set — from token shards through the
frozen LLM; ``data.py`` explains why both give identical decoder inputs.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmtts.data.remote import location
from llmtts.data.shards import read_index
from llmtts.decoder.config import TOKEN_FACTS, DecoderConfig
from llmtts.decoder.data import Batch, CropTokens, HiddenCollate, ItemSamples
from llmtts.decoder.export import load_decoder, write_decoder_files
from llmtts.decoder.model import HiddenDecoder
from llmtts.errors import UserError
from llmtts.nn.discriminators import CombinedDiscriminator
from llmtts.nn.losses import ReconstructionLoss
from llmtts.nn.vocoder_gan import vocoder_gan_step
from llmtts.train.stage import Stage

log = logging.getLogger(__name__)


class FrozenLLMStates:
    """On-the-fly mode: the decoder inputs of a batch, computed by the frozen LLM exactly as dump-hidden does
    (teacher-forced whole utterance, post-norm states, one per audio token, rounded as shards of
    ``hidden_dtype`` store them)."""

    def __init__(self, llm_path: str | Path, hidden_dtype: str = "fp16"):
        from llmtts.data.hidden_format import HiddenFormat
        from llmtts.llm import load_llm

        self.format = HiddenFormat(hidden_dtype, "none")

        self.model, self.vocab, self.frontend = load_llm(llm_path)
        self.model.requires_grad_(False)

    @property
    def info(self) -> dict:
        return {"hidden_size": self.model.config.hidden_size, "n_audio": self.vocab.n_audio,
                "vocab_size": self.model.lm_head.weight.shape[0]}

    @torch.no_grad()
    def __call__(self, batch: Batch, device: torch.device) -> torch.Tensor:
        from llmtts.llm.hidden import audio_hidden_states, training_ids

        self.model.to(device)
        out = []
        for it in batch.items:
            codes = it.codes.reshape(-1) if it.codes.ndim == 2 and it.codes.shape[1] == 1 else it.codes
            speaker = it.speaker if self.vocab.speakers else None
            ids, n_prompt = training_ids(self.vocab, self.frontend, it.text, codes, speaker=speaker)
            h = audio_hidden_states(self.model, ids, n_prompt)
            out.append(self.format.round_trip(h[it.start: it.start + batch.n]))
        return torch.stack(out)


class DecoderStage(Stage):
    name = "decoder"
    unit = "audio_s"

    def __init__(self, cfg: DecoderConfig, run_dir: Path, input_dir: str | Path | None = None):
        super().__init__(cfg, run_dir)
        self.input_dir = location(input_dir) if input_dir is not None else None
        self.mode = "llm" if cfg.llm_path else "hidden"
        self._index: dict | None = None
        self.states = FrozenLLMStates(cfg.llm_path, cfg.hidden_dtype) if self.mode == "llm" else None
        if self.states is not None:  # the LLM's width is the decoder's input size
            width = self.states.info["hidden_size"]
            if cfg.model.hidden_size and width != cfg.model.hidden_size:
                raise UserError(f"--llm-path {cfg.llm_path}: hidden size {width} but "
                                f"model.hidden_size={cfg.model.hidden_size}")
            cfg.model = dataclasses.replace(cfg.model, hidden_size=width)
        if not cfg.model.is_resolved:  # unset token facts come from index.json now (RUN/config.yaml then says them)
            self._require_input()
        m = cfg.model
        self.gan = cfg.stage == "gan"
        if self.gan and not cfg.init_from:
            log.warning("decoder: stage gan without --init-from: the generator starts from scratch "
                        "(train stage recon first and pass its run directory)")
        self.recon_loss = ReconstructionLoss(m.sample_rate, m.n_fft, cfg.loss.mel_resolutions,
                                             cfg.loss.stft_resolutions, cfg.loss.mel_weight, cfg.loss.stft_weight)
        # torch.stft(center=True) reflect-pads n_fft/2: a crop must be longer than that.
        longest = self.recon_loss.longest_fft
        self.min_tokens = math.floor(longest / 2 / m.samples_per_token) + 1
        if cfg.crop_tokens < self.min_tokens:
            raise UserError(f"crop of {cfg.crop_tokens} tokens is shorter than the loss' longest STFT "
                            f"({longest}) needs: use at least {self.min_tokens} tokens")
        self._preview: tuple[torch.Tensor, torch.Tensor] | None = None

    # --- input checks -------------------------------------------------------------------------
    def _require_input(self) -> Path:
        if self.input_dir is None:
            raise UserError("decoder training needs --input-dir (hidden shards from `llmtts llm dump-hidden`, or "
                            "token shards with --llm-path)")
        if self._index is None:
            index = read_index(self.input_dir)
            want = ("hidden",) if self.mode == "hidden" else ("tokens", "hidden")
            if index["kind"] not in want:
                hint = ("make them with `llmtts llm dump-hidden`, or pass --llm-path to compute states on the fly"
                        if self.mode == "hidden" else "make them with `llmtts codec encode`")
                raise UserError(f"{self.input_dir}/index.json: kind '{index['kind']}', expected {' or '.join(want)} "
                                f"shards ({hint})")
            facts = {k: index[k] for k in TOKEN_FACTS if isinstance(index.get(k), int)}
            self.cfg.model = self.cfg.model.resolved(facts, f"{self.input_dir}/index.json")
            self._index = index
        return self.input_dir

    def llm_info(self) -> dict:
        if self.states is not None:
            return self.states.info
        # dump-hidden carries the token index's facts: the LLM's width and its number of audio codes.
        index = self._index or {}
        info = {}
        if isinstance(index.get("hidden_size"), int):
            info["hidden_size"] = index["hidden_size"]
        if isinstance(index.get("codebook_size"), int):
            info["n_audio"] = index["codebook_size"]
        return info

    # --- models -------------------------------------------------------------------------------
    def build_models(self) -> dict[str, nn.Module]:
        gen = HiddenDecoder(self.cfg.model)
        if self.cfg.init_from:
            init, _ = load_decoder(self.cfg.init_from)
            if init.cfg != self.cfg.model:
                raise UserError(f"--init-from {self.cfg.init_from}: its model config differs from this run's "
                                f"({init.cfg} vs {self.cfg.model})")
            gen.load_state_dict(init.state_dict())
        models: dict[str, nn.Module] = {"gen": gen}
        if self.gan:
            models["disc"] = CombinedDiscriminator.from_config(self.cfg.gan, self.cfg.model.n_fft)
        return models

    def parallelize(self, models: dict[str, nn.Module], pctx: Any) -> dict[str, nn.Module]:
        from llmtts.decoder.parallelize import parallelize_decoder

        return parallelize_decoder(models, pctx)

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"gen": ["gen"], "disc": ["disc"]} if self.gan else {"gen": ["gen"]}

    def optimizer_overrides(self) -> dict[str, dict]:
        return {"disc": {"lr": self.cfg.gan.disc_lr}} if self.gan and self.cfg.gan.disc_lr > 0 else {}

    # --- data ---------------------------------------------------------------------------------
    def loader(self, split: str, rank: int, world_size: int, train: bool, crop_tokens: int | None = None):
        from llmtts.data.reader import ShardLoader

        m, d = self.cfg.model, self.cfg.data
        # audio_crop: only the crop's frames are decoded (CropTokens slices the lazily read FLAC).
        fields = ["audio_crop", "hidden"] if self.mode == "hidden" else ["audio_crop", "codes"]
        transform = CropTokens(m.samples_per_token, m.sample_rate, crop_tokens or self.cfg.crop_tokens,
                               m.hidden_size, self.mode, d.seed + 7919 * rank, random=train)
        return ShardLoader.from_config(self._require_input(), split, rank, world_size, d, train=train,
                                       length_fn=ItemSamples(m.samples_per_token),
                                       collate_fn=HiddenCollate(m.samples_per_token), fields=fields, transform=transform)

    def train_data(self, rank: int, world_size: int):
        return self.loader(self.cfg.data.train_split, rank, world_size, train=True)

    def val_data(self, rank: int, world_size: int):
        try:
            return self.loader(self.cfg.data.val_split, rank, world_size, train=False,
                               crop_tokens=self.cfg.recon_crop_tokens)
        except UserError as exc:
            log.warning("decoder: no validation data (%s)", exc)
            return None

    def units_in_batch(self, batch: Batch) -> float:
        return batch.audio.numel() / self.cfg.model.sample_rate

    def inputs(self, batch: Batch, device: torch.device) -> torch.Tensor:
        """The decoder input ``[B, C, d]`` of a batch, in either mode."""
        if batch.hidden is not None:
            return batch.hidden.to(device, non_blocking=True)
        if self.states is None:
            raise UserError("batch has no hidden states and no --llm-path was given")
        return self.states(batch, device)

    # --- steps --------------------------------------------------------------------------------
    def _recon(self, wav: torch.Tensor, target: torch.Tensor, device) -> tuple[torch.Tensor, dict[str, float]]:
        return self.recon_loss.to(device)(wav, target)

    def train_step(self, batch: Batch, ctx) -> dict[str, float]:
        hidden = self.inputs(batch, ctx.device)
        target = batch.audio.to(ctx.device, non_blocking=True)
        g = self.cfg.gan
        with ctx.autocast():
            wav = ctx.models["gen"](hidden)
        target = target[..., : wav.shape[-1]]  # Soprano's edges (an imported decoder) emit one token fewer
        return vocoder_gan_step(ctx, wav, target, self.recon_loss.to(ctx.device), train_disc=self.gan,
                                use_adversarial=self.gan and ctx.global_step >= g.disc_warmup_steps,
                                kind=g.kind, adv_weight=g.adv_weight, fm_weight=g.fm_weight)

    @torch.no_grad()
    def eval_step(self, batch: Batch, ctx) -> dict[str, float]:
        target = batch.audio.to(ctx.device)
        with ctx.autocast():
            wav = ctx.models["gen"](self.inputs(batch, ctx.device))
        target = target[..., : wav.shape[-1]]
        loss, parts = self._recon(wav, target, ctx.device)
        if self._preview is None:
            self._preview = (target[0].float().cpu(), wav[0].float().cpu())
        parts["loss"] = loss.item()
        return parts

    def on_eval_end(self, ctx, step: int) -> None:
        if self._preview is None:
            return
        target, recon = self._preview
        self._preview = None
        ctx.logger.log_audio_comparison("decoder", {"target": target, "output": recon}, self.cfg.model.sample_rate,
                                        step, spectrogram=self.recon_loss.mel_loss.mels[-1].cpu())

    # --- export -------------------------------------------------------------------------------
    def export(self, models: dict[str, nn.Module], out_dir: Path) -> None:
        write_decoder_files(models["gen"], out_dir, self.llm_info())
