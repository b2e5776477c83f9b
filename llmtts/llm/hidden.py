"""THE definition of sequence layout and hidden-state alignment, shared by training, ``dump-hidden``
and inference (``llmtts.infer``), so the decoder sees the same vectors in training and at run time.

Sequence layout (speaker token optional)::

    training:   [stop] [spk] [text_start] t1 .. tK [speech_start] a1 .. aN [stop]
    inference:  [stop] [spk] [text_start] t1 .. tK [speech_start]            -> generate a1 ..

Hidden state of audio token a_i := the final-layer state *after the final RMSNorm* at the position
a_i is predicted from: speech_start's state for a1, a1's state for a2, ..., a_{N-1}'s for aN.
That is exactly the vector whose ``lm_head`` projection a_i was sampled from during generation.

Post-norm: we read ``Qwen3Model(...).last_hidden_state``, which transformers computes as
``self.norm(hidden_states)`` (checked against an explicit ``model.norm`` of the pre-norm state in
tests/llm/test_hidden.py) instead of relying on ``hidden_states[-1]`` semantics, which differ
between transformers versions.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from llmtts.llm.vocab import Vocab


def prompt_ids(vocab: Vocab, frontend: Any, text: str, speaker: str | None = None,
               normalized: bool = False) -> list[int]:
    """Inference prompt ``[stop][spk][text_start] text [speech_start]``. ``frontend`` is a
    ``llmtts.llm.tokenizer.Frontend``; ``normalized=True`` skips the normaliser (training data
    already holds ``normalized_text``)."""
    local = frontend.encode(text) if normalized else frontend(text)
    ids = [vocab.stop]
    if speaker is not None:
        ids.append(vocab.speaker_id(speaker))
    ids.append(vocab.text_start)
    ids.extend(vocab.text_ids(local))
    ids.append(vocab.speech_start)
    return ids


def training_ids(vocab: Vocab, frontend: Any, normalized_text: str, codes: np.ndarray | Sequence[int],
                 speaker: str | None = None) -> tuple[np.ndarray, int]:
    """``prompt a1..aN [stop]`` as int64 [L], and the prompt length (index of a1)."""
    prompt = prompt_ids(vocab, frontend, normalized_text, speaker=speaker, normalized=True)
    audio = vocab.audio_ids(codes)
    ids = np.concatenate([np.asarray(prompt, dtype=np.int64), audio, np.asarray([vocab.stop], dtype=np.int64)])
    return ids, len(prompt)


def audio_state_positions(n_prompt: int, n_audio: int) -> slice:
    """Positions (within one sequence) whose states predict a1..aN."""
    return slice(n_prompt - 1, n_prompt - 1 + n_audio)


def forward_with_hidden(model, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                        cache: Any = None, use_cache: bool = False):
    """One forward of a ``Qwen3ForCausalLM``: returns ``(logits, hidden, cache)`` where ``hidden`` is
    the post-final-norm state [B, L, d] that ``logits = lm_head(hidden)`` come from.

    With ``position_ids`` restarting at 0 per utterance and no cache, transformers builds a
    block-diagonal (packed) mask; with a cache it is a plain causal step.
    """
    out = model.model(input_ids=input_ids, position_ids=position_ids, cache=cache, use_cache=use_cache)
    hidden = out.last_hidden_state
    return model.lm_head(hidden), hidden, (out.cache if use_cache else None)


@torch.no_grad()
def audio_hidden_states(model, input_ids: torch.Tensor | np.ndarray | Sequence[int], n_prompt: int,
                        n_audio: int | None = None) -> torch.Tensor:
    """Teacher-forced states of one training sequence -> [N, d] (one per audio token).

    ``n_audio`` defaults to ``len(input_ids) - n_prompt - 1`` (a sequence ending in [stop]).
    """
    ids = torch.as_tensor(np.asarray(input_ids), dtype=torch.long).reshape(-1)
    if n_audio is None:
        n_audio = ids.numel() - n_prompt - 1
    device = next(model.parameters()).device
    hidden = model.model(input_ids=ids[None].to(device), use_cache=False).last_hidden_state[0]
    return hidden[audio_state_positions(n_prompt, n_audio)]
