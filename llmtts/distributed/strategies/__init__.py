"""The parallel strategies behind ``parallel.strategy``, one module each, built once by ``build_strategy``.

Adding a strategy (say HSDP) is one file here, a subclass of ``base.Strategy`` (docs/CONVENTIONS.md, "What a
strategy provides"), and one line in ``REGISTRY``; ``parallel.strategy`` accepts every name listed here.
Modules are imported on first use, so reading a config does not import FSDP or DeepSpeed.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from llmtts.distributed.strategies.base import Strategy
from llmtts.errors import UserError

# parallel.strategy -> "module:class" under this package.
REGISTRY: dict[str, str] = {
    "none": "none:SingleProcess",
    "ddp": "ddp:DDPStrategy",
    "fsdp2": "fsdp2:FSDP2Strategy",
    "deepspeed": "deepspeed:DeepSpeedStrategy",
}


def strategy_class(name: str) -> type[Strategy]:
    if name not in REGISTRY:
        raise UserError(f"unknown parallel.strategy {name!r} (one of: {', '.join(REGISTRY)})")
    module, cls = REGISTRY[name].split(":")
    return getattr(import_module(f"{__name__}.{module}"), cls)


def build_strategy(pcfg: Any) -> Strategy:
    """The strategy object for ``cfg.parallel`` (``ParallelConfig``); it joins the process group on ``start()``."""
    return strategy_class(pcfg.strategy)(pcfg)


__all__ = ["REGISTRY", "Strategy", "build_strategy", "strategy_class"]
