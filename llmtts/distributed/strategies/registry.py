"""``parallel.strategy`` name -> strategy class. Kept apart from the package's ``__init__`` so that ``base`` can
look a saved run's strategy up without importing the package that imports it (no import circle)."""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from llmtts.errors import UserError

if TYPE_CHECKING:
    from llmtts.distributed.strategies.base import Strategy

PACKAGE = "llmtts.distributed.strategies"
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
    return getattr(import_module(f"{PACKAGE}.{module}"), cls)
