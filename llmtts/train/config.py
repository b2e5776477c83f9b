"""Config sections shared by every stage: the loop, parallelism, logging and data reading.

A stage config (``CodecConfig``, ``LLMConfig``, ``DecoderConfig``) embeds these as ``trainer``,
``parallel``, ``log`` and ``data`` next to its own ``model`` section.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class OptimConfig:
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 0.01
    eps: float = 1e-8
    schedule: Literal["constant", "cosine", "wsd"] = "cosine"
    warmup_steps: int = 0
    # Warmup-stable-decay: fraction of max_steps spent in the final decay.
    decay_fraction: float = 0.2
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        # Checked here so a bad value is one line naming the key at start-up, not a traceback from the
        # optimizer (torch refuses lr < 0) or a run that trains on NaN (lr = nan / inf).
        # lr = 0 is allowed: it runs the whole machinery with frozen weights (tests, dry runs).
        if not 0 <= self.lr < math.inf:
            raise ValueError(f"lr must be a finite number >= 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not 0 < self.eps < math.inf:
            raise ValueError(f"eps must be a finite number > 0, got {self.eps}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        for key in ("decay_fraction", "min_lr_ratio"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"{key} must be in [0, 1], got {getattr(self, key)}")


@dataclass
class TrainerConfig:
    max_steps: int = 1000
    # Stop after this many minutes of wall time (checkpointing first); 0 = no limit.
    max_minutes: float = 0.0
    grad_accum: int = 1
    grad_clip: float = 1.0
    seed: int = 1234
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema_decay: float = 0.0  # 0 disables EMA
    eval_every: int = 0  # steps; 0 = only at the end
    eval_batches: int = 8
    save_every: int = 0  # steps; 0 = only at the end
    save_every_minutes: float = 0.0
    keep_last: int = 2
    # Keep the best model by a validation metric (a key of the stage's val metrics, lower is better): each
    # evaluation that improves it re-exports RUN/best/ (same format as RUN/export/, plus best.json with the
    # step and value). "" = off. Small data over-fits: the last step is often not the best one.
    best_metric: str = ""
    log_every: int = 10
    activation_checkpointing: bool = False
    compile: bool = False
    deterministic: bool = False

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        if self.grad_accum < 1:
            raise ValueError("grad_accum must be >= 1")
        if self.keep_last < 1:
            raise ValueError("keep_last must be >= 1")


@dataclass
class DeepSpeedConfig:
    zero_stage: int = 2
    # JSON template under configs/deepspeed/ (batch sizes and optimizer are filled in by the core).
    config_file: str = ""

    def __post_init__(self) -> None:
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")


@dataclass
class ParallelConfig:
    # A name in llmtts.distributed.strategies.REGISTRY: none | ddp | fsdp2 | deepspeed.
    strategy: str = "none"
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    # A collective that waits longer than this fails (a dead or stuck rank) instead of hanging the others.
    timeout_min: float = 30.0
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)

    def __post_init__(self):
        from llmtts.distributed.strategies import REGISTRY

        if self.strategy not in REGISTRY:
            raise ValueError(f"strategy {self.strategy!r} is not one of {list(REGISTRY)}")
        if not self.timeout_min > 0:
            raise ValueError(f"timeout_min must be > 0, got {self.timeout_min}")


@dataclass
class LogConfig:
    wandb: bool = False
    wandb_project: str = "llm-tts-factory"
    wandb_run: str = ""
    wandb_group: str = ""
    tensorboard: bool = True
    progress: bool = True
    log_audio_every: int = 0  # steps; 0 = only at eval time


@dataclass
class DataConfig:
    # Batching: dynamic batches under a budget in the stage's unit (audio samples / tokens),
    # with at most max_batch_size items.
    batch_budget: int = 160000
    max_batch_size: int = 16
    shuffle_buffer: int = 256
    num_workers: int = 0
    val_split: str = "val"
    train_split: str = "train"
    seed: int = 0
    # Optional cap on item length in the stage's unit (longer items are cropped or skipped).
    max_item_length: Optional[int] = None
