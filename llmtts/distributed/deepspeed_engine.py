"""DeepSpeed ZeRO 1/2/3 behind ``parallel.strategy: deepspeed``.

The core passes its own torch AdamW (DeepSpeed's fused Adam would JIT-compile for a minute and is
unavailable on CPU) and drives its own schedule, so the JSON only needs ZeRO settings; batch sizes,
accumulation, clipping and precision are filled in from the trainer config.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from llmtts.errors import UserError

# A stable cache so DeepSpeed's one-time op builds (~1 min on CPU) are reused by every run and test.
DEFAULT_EXTENSIONS_DIR = Path.home() / ".cache" / "llmtts" / "torch_extensions"


def prepare_env() -> None:
    """Must run before ``import deepspeed``: pick the CPU accelerator without CUDA, cache JIT builds."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(DEFAULT_EXTENSIONS_DIR))


def build_config(zero_stage: int, config_file: str, grad_accum: int, grad_clip: float, world_size: int,
                 bf16: bool) -> dict:
    cfg: dict = {}
    if config_file:
        p = Path(config_file)
        try:
            cfg = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"parallel.deepspeed.config_file {p}: cannot read JSON ({exc})") from None
    if "optimizer" in cfg or "scheduler" in cfg:
        raise UserError(f"{config_file}: remove 'optimizer'/'scheduler': the training core passes its own AdamW and schedule")
    cfg.setdefault("zero_optimization", {})["stage"] = zero_stage
    # We never use DeepSpeed's data loader; a micro batch is "one call to train_step".
    cfg["train_micro_batch_size_per_gpu"] = 1
    cfg["gradient_accumulation_steps"] = grad_accum
    cfg["train_batch_size"] = grad_accum * world_size
    cfg["gradient_clipping"] = float(grad_clip)
    cfg["zero_allow_untested_optimizer"] = True
    cfg.setdefault("steps_per_print", 10**9)
    cfg.setdefault("wall_clock_breakdown", False)
    if bf16:
        cfg["bf16"] = {"enabled": True}
    return cfg


def initialize(module: nn.Module, optimizer: torch.optim.Optimizer, config: dict):
    prepare_env()
    import deepspeed

    engine, ds_optimizer, _, _ = deepspeed.initialize(model=module, optimizer=optimizer, config=config,
                                                      dist_init_required=False)
    return engine, ds_optimizer


def gathered_state_dict(module: nn.Module, zero_stage: int, is_main: bool) -> dict[str, torch.Tensor] | None:
    """Full CPU state dict on rank 0 (ZeRO-3 gathers the partitioned parameters; collective)."""
    if zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()} if is_main else None
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()} if is_main else None


def prebuild_ops() -> None:
    """Build (or load from the cache) the ops DeepSpeed JIT-compiles at start-up, once, before a
    multi-rank job or a test session would otherwise wait on it."""
    prepare_env()
    from deepspeed.comm.torch import build_shm_op

    build_shm_op()


if __name__ == "__main__":  # python -m llmtts.distributed.deepspeed_engine
    prebuild_ops()
