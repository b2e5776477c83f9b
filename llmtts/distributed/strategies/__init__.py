"""The parallel strategies behind ``parallel.strategy``, one module each, built once by ``build_strategy``.

Adding a strategy (say HSDP) is one file here, a subclass of ``base.Strategy`` (docs/CONVENTIONS.md, "What a
strategy provides"), and one line in ``registry.REGISTRY``; ``parallel.strategy`` accepts every name listed here.
Modules are imported on first use, so reading a config does not import FSDP or DeepSpeed.
"""
from __future__ import annotations

from typing import Any

from llmtts.distributed.strategies.base import Strategy
from llmtts.distributed.strategies.registry import REGISTRY, strategy_class


def build_strategy(pcfg: Any) -> Strategy:
    """The strategy object for ``cfg.parallel`` (``ParallelConfig``); it joins the process group on ``start()``."""
    return strategy_class(pcfg.strategy)(pcfg)


__all__ = ["REGISTRY", "Strategy", "build_strategy", "strategy_class"]
