"""Helpers shared by the LLM tests."""
import torch
from transformers import DynamicCache

from llmtts.llm.hidden import forward_with_hidden


@torch.no_grad()
def generation_states(model, prompt: list[int], audio_ids: list[int]) -> tuple[torch.Tensor, list[int]]:
    """States a KV-cached generation loop records, fed ``audio_ids`` instead of sampling;
    also the greedy choice at each step (to check logits come from the recorded state)."""
    cache = DynamicCache(config=model.config)
    logits, hidden, cache = forward_with_hidden(model, torch.tensor([prompt]), cache=cache, use_cache=True)
    states, greedy = [], []
    for tok in audio_ids:
        states.append(hidden[0, -1])
        greedy.append(int(model.lm_head(hidden[0, -1]).argmax()))
        assert greedy[-1] == int(logits[0, -1].argmax())
        logits, hidden, cache = forward_with_hidden(model, torch.tensor([[tok]]), cache=cache, use_cache=True)
    return torch.stack(states), greedy
