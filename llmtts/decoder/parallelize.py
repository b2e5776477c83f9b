"""How the decoder stage is wrapped per strategy (``llmtts.distributed.parallelize.ParallelContext`` wraps).

Generator: each ConvNeXt block of the backbone is an FSDP2 unit / activation-checkpointed / compiled block;
embedding, norms and the iSTFT head stay in the root unit. Discriminator: one unit (small, and called under
``ctx.frozen`` in the generator step, where per-block sharding gains nothing).
"""
from __future__ import annotations

from typing import Any

from torch import nn


def parallelize_decoder(models: dict[str, nn.Module], pctx: Any) -> dict[str, nn.Module]:
    gen = models["gen"]
    out = {"gen": pctx.wrap(gen, blocks=list(gen.backbone.blocks))}
    if "disc" in models:
        out["disc"] = pctx.wrap(models["disc"])
    return out
