"""How the LLM is wrapped for each strategy: one FSDP2 unit / checkpointed / compiled block per
decoder layer, plus the root (embeddings, final norm, lm_head)."""
from __future__ import annotations

from torch import nn


def parallelize_llm(models: dict[str, nn.Module], pctx) -> dict[str, nn.Module]:
    model = models["model"]
    layers = list(model.model.layers)
    return {"model": pctx.wrap(model, blocks=layers)}
