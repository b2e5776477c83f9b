"""``parallel.strategy: none``: one process, one device, plain torch (the defaults of ``base.Strategy``)."""
from __future__ import annotations

from llmtts.distributed import process_group as pg
from llmtts.distributed.strategies.base import Strategy
from llmtts.errors import UserError


class SingleProcess(Strategy):
    name = "none"
    needs_process_group = False  # no group at all unless a launcher started several processes
    shares_work_across_ranks = False

    def start(self) -> pg.DistInfo:
        info = super().start()
        if info.world_size > 1:
            raise UserError(f"launched with {info.world_size} processes but parallel.strategy is 'none'; "
                            "set parallel.strategy=ddp, fsdp2 or deepspeed")
        return info
