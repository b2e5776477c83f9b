"""The contract between a training stage and the one training core (``llmtts.train.trainer``).

A stage (codec, LLM, decoder recon/gan) says *what* to train; the core owns *how*: device,
precision, process group, parallel wrapping (by calling the stage's ``parallelize``), optimizers,
schedules, grad accumulation, clipping, EMA, checkpoints, resume, signals, logging.

Step protocol (works for plain and GAN stages alike)::

    def train_step(self, batch, ctx):
        with ctx.autocast():
            loss_d = ...                     # discriminator loss (GAN only)
        ctx.backward(loss_d, "disc")
        ctx.step("disc")                     # applied only at the grad-accumulation boundary
        with ctx.autocast(), ctx.frozen("disc"):  # no discriminator gradients from the generator loss
            loss_g = ...
        ctx.backward(loss_g, "gen")
        ctx.step("gen")
        return {"loss": loss_g.item(), ...}  # floats; "loss" is shown in the progress bar

``ctx.backward`` scales by 1/grad_accum and uses the DeepSpeed engine's backward when one wraps
the optimizer's models; ``ctx.step`` clips, steps, zeroes grads and advances that optimizer's
scheduler at the accumulation boundary only (an update whose gradient norm is not finite is skipped).
Metrics are averaged over micro-batches and ranks. The full ``ctx`` API and the run directory are
described in docs/training.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

import torch
from torch import nn


class StatefulIterable(Protocol):
    """A data source whose position can be checkpointed (``llmtts.data.reader`` provides one)."""

    def __iter__(self) -> Iterator[Any]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class Stage:
    """Base class; override what the stage needs. ``cfg`` is the stage's dataclass config."""

    name: str = "stage"
    # Unit for the progress bar's throughput, e.g. "tok" or "audio_s"; ``units_in_batch`` counts it.
    unit: str = "samples"

    def __init__(self, cfg: Any, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)

    # --- models and optimizers -------------------------------------------------------------
    def build_models(self) -> dict[str, nn.Module]:
        """Return the trainable models by name, e.g. {"model": m} or {"gen": g, "disc": d}."""
        raise NotImplementedError

    def parallelize(self, models: dict[str, nn.Module], pctx: Any) -> dict[str, nn.Module]:
        """Wrap models for the chosen strategy. Default: the core's generic wrapping for every model.
        Stages override (in ``<stage>/parallelize.py``) to choose FSDP units, checkpointed blocks...
        """
        return {k: pctx.wrap(m) for k, m in models.items()}

    def optimizer_groups(self) -> dict[str, list[str]]:
        """Optimizer name -> model names it updates. Default: one optimizer "main" over all models."""
        return {"main": list(self.models_names)}

    def optimizer_overrides(self) -> dict[str, dict]:
        """Optional per-optimizer overrides of OptimConfig fields (e.g. {"disc": {"lr": 2e-4}})."""
        return {}

    # --- data ---------------------------------------------------------------------------------
    def train_data(self, rank: int, world_size: int) -> StatefulIterable:
        """An endless (epoch-cycling), resumable iterable of batches for this rank."""
        raise NotImplementedError

    def val_data(self, rank: int, world_size: int) -> Iterable[Any] | None:
        """A finite iterable of validation batches for this rank, or None."""
        return None

    def units_in_batch(self, batch: Any) -> float:
        """How many ``unit`` a batch holds (tokens, seconds of audio); for throughput."""
        return 0.0

    # --- steps --------------------------------------------------------------------------------
    def train_step(self, batch: Any, ctx: Any) -> dict[str, float]:
        raise NotImplementedError

    @torch.no_grad()
    def eval_step(self, batch: Any, ctx: Any) -> dict[str, float]:
        """Metrics for one validation batch; the core averages them over batches and ranks."""
        return {}

    def on_eval_end(self, ctx: Any, step: int) -> None:
        """Hook after evaluation: log audio / spectrograms through ``ctx.logger``. Called on every rank
        (forwards of FSDP2 / ZeRO-3 models are collective); ``ctx.logger`` writes on rank 0 only."""

    # --- resumable per-rank state --------------------------------------------------------------
    def state_dict(self) -> dict:
        """Per-rank state outside the models that training or its logged metrics depend on (e.g. a rolling
        window of recent batches). Saved in each rank's checkpoint file (tensors, numbers, strings, lists and
        dicts: it is loaded with ``weights_only=True``) and handed to ``load_state_dict`` on a resume at the
        same world size, so a resumed run logs what the uninterrupted one logs."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned (called after the models and data position are restored)."""

    # --- export -------------------------------------------------------------------------------
    def export(self, models: dict[str, nn.Module], out_dir: Path) -> None:
        """Write the consolidated inference checkpoint (safetensors + JSON) into ``out_dir``.
        Models passed here are unwrapped, with full (gathered) fp32 weights, on CPU, rank 0 only.
        """
        raise NotImplementedError

    # Filled in by the core after build_models().
    models_names: tuple[str, ...] = ()
