"""How the codec stage is wrapped per strategy (``llmtts.distributed.parallelize.ParallelContext`` does the wrapping).

Generator: every ConvNeXt block (encoder, token encoder, decoder) is an FSDP2 unit / activation-checkpointed
block; the rest (mel front end, strided convs, quantizer, iSTFT head) stays in the root unit.
Discriminator: one unit. It is small, and the GAN step calls it under ``ctx.frozen`` (parameters toggled
to ``requires_grad=False``), which per-block sharding gains nothing from.
"""
from __future__ import annotations

from typing import Any

from torch import nn


def codec_blocks(gen: nn.Module) -> list[nn.Module]:
    return list(gen.encoder.blocks) + list(gen.token_encoder.blocks) + list(gen.decoder.blocks)


def parallelize_codec(models: dict[str, nn.Module], pctx: Any) -> dict[str, nn.Module]:
    out = {"gen": pctx.wrap(models["gen"], blocks=codec_blocks(models["gen"]))}
    if "disc" in models:
        out["disc"] = pctx.wrap(models["disc"])
    return out
