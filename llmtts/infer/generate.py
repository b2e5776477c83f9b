"""KV-cached autoregressive generation of audio tokens, collecting the decoder's input on the way.

For every generated audio token we keep the post-final-norm hidden state it was sampled from — the
alignment ``llmtts.llm.hidden`` defines and ``dump-hidden`` writes (speech_start's state for a1, a1's
state for a2, ...). A sampled [stop] ends the sequence and its state is dropped.

Batches are left-padded (attention mask + position ids restarting at each row's first real token), so
a row's computation is the same as if it ran alone; with per-row generators (``sampling.py``) batch
output equals one-by-one output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from llmtts.infer.sampling import SamplingConfig, apply_repetition_penalty, sample_next


@dataclass
class StepOutput:
    """What one decode step produced. Rows listed in ``emitted`` got a new audio token."""

    step: int
    emitted: list[int]  # batch rows that produced an audio token this step
    codes: torch.Tensor  # [len(emitted)] codec codes (0..n_audio-1)
    hidden: torch.Tensor  # [len(emitted), d] their states (float32)
    finished: list[bool]  # per row, after this step


@dataclass
class Generation:
    codes: list[torch.Tensor] = field(default_factory=list)  # per row [T_i] codec codes
    hidden: list[torch.Tensor] = field(default_factory=list)  # per row [T_i, d]
    stopped: list[bool] = field(default_factory=list)  # True = ended on [stop], False = hit max length


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids, mask


def output_head(lm_head: torch.nn.Module, start: int, stop: int):
    """``lm_head`` restricted to rows ``start:stop`` ([stop] + audio ids: text and speaker ids are never
    valid outputs), as a callable ``h [B, d] -> logits [B, stop - start]``."""
    if hasattr(lm_head, "rows"):  # llmtts.infer.quant.Int8Linear: slice once, reuse (it copies 3 B/weight)
        cached = getattr(lm_head, "_rows_cache", None)
        if cached is None or cached[0] != (start, stop):
            cached = ((start, stop), lm_head.rows(start, stop))
            lm_head._rows_cache = cached
        return cached[1]
    from llmtts.infer.onednn import linear

    w = lm_head.weight[start:stop]
    b = None if lm_head.bias is None else lm_head.bias[start:stop]
    return lambda h: linear(h.to(w.dtype), w, b)


class _Forward:
    """The model's forward for one decode step -> the last position's post-norm state ``[B, d]``: a prefill into a
    ``DynamicCache`` then single-token steps (through ``fast_decode.StaticDecoder`` when ``fast`` and the model
    supports it), or, with ``use_cache=False``, the whole sequence recomputed every step (the reference)."""

    def __init__(self, model, padded: bool, use_cache: bool, fast: bool, max_new: int, cuda_graphs: bool = True):
        from transformers import DynamicCache

        self.model, self.padded, self.use_cache, self.max_new = model, padded, use_cache, max_new
        self.cuda_graphs = cuda_graphs
        self.cache = DynamicCache() if use_cache else None
        self.static = None
        if use_cache and fast:
            from llmtts.infer.fast_decode import supports_fast_decode

            fast = supports_fast_decode(model)
        self.fast = use_cache and fast

    def __call__(self, ids, positions, full_ids, full_pos, mask) -> torch.Tensor:
        if self.static is not None:
            return self.static.step(ids, positions)
        attn = mask if self.padded else None  # no mask at all when no row is padded
        if self.use_cache:
            out = self.model.model(input_ids=ids, attention_mask=attn, position_ids=positions, cache=self.cache,
                                   use_cache=True)
            self.cache = out.cache
        else:
            out = self.model.model(input_ids=full_ids, attention_mask=attn, position_ids=full_pos, use_cache=False)
        if self.fast:  # prefill done: continue with static-cache steps
            from llmtts.infer.fast_decode import StaticDecoder
            from llmtts.infer.graphed_decode import GraphedDecoder, cuda_graphs_enabled

            kind = GraphedDecoder if self.cuda_graphs and cuda_graphs_enabled(ids.device) else StaticDecoder
            self.static = kind(self.model, self.cache, attn, ids.shape[1] + self.max_new + 1)
            self.cache = None
        return out.last_hidden_state[:, -1]  # [B, d] post-norm: the state the next token is sampled from


def _sample(h, head, step: int, stop_col: int, history: torch.Tensor, sampling: SamplingConfig,
            generators: Sequence[torch.Generator], min_new_tokens: int) -> torch.Tensor:
    """The next id of every row, in head-slice space, on the CPU."""
    logits = head(h).float()  # [B, width]; column stop_col = [stop]
    if step < min_new_tokens:
        logits[:, stop_col] = float("-inf")
    if sampling.repetition_penalty != 1.0 and history.shape[1]:
        logits = apply_repetition_penalty(logits, history.to(logits.device), sampling.repetition_penalty)
    return sample_next(logits, sampling, list(generators)).cpu()


def _emit(nxt: torch.Tensor, stop_col: int, finished: list[bool], counts: list[int],
          max_new_tokens: Sequence[int]) -> list[int]:
    """Rows that got an audio token this step; marks rows that sampled [stop] or reached their length finished."""
    emitted = []
    for i in range(len(finished)):
        if finished[i]:
            continue
        if int(nxt[i]) == stop_col:
            finished[i] = True
            continue
        emitted.append(i)
        counts[i] += 1
        if counts[i] >= max_new_tokens[i]:
            finished[i] = True
    return emitted


@torch.inference_mode()
def generate_steps(model, prompts: Sequence[Sequence[int]], *, stop_id: int, audio_offset: int, n_audio: int,
                   max_new_tokens: Sequence[int], sampling: SamplingConfig, generators: Sequence[torch.Generator],
                   min_new_tokens: int = 0, pad_id: int = 0, use_cache: bool = True,
                   fast: bool = True, cuda_graphs: bool = True) -> Iterator[StepOutput]:
    """Yield one ``StepOutput`` per decode step until every row stopped or reached its max length.

    ``model`` is a ``Qwen3ForCausalLM``; the vocabulary must put [stop] right before the audio ids
    (``llmtts.llm.vocab``), so the logits we need are one contiguous slice of ``lm_head``.
    ``sampling.full_vocab`` chooses among all of ``lm_head``'s rows but pad instead (Soprano's runtime; a non-audio
    id is then emitted with a "code" outside 0..n_audio-1); ``sampling.penalize_prompt`` puts the prompt's
    ids into the repetition penalty's history (Hugging Face's ``RepetitionPenaltyLogitsProcessor``).
    ``min_new_tokens`` masks [stop] for that many steps (benchmarks force a fixed length).
    ``use_cache=False`` recomputes the whole sequence at every step: the naive reference that tests and
    the benchmark compare the cached loop against. ``fast=True`` runs decode steps through
    ``fast_decode.StaticDecoder`` (preallocated cache, ``step_plan``) when the model is a Qwen3; on a GPU through
    its CUDA-graph form (``graphed_decode``) unless ``cuda_graphs=False`` (e.g. samples during training, where
    recording a graph per call would only add work).
    """
    full = bool(sampling.full_vocab)
    if not full and stop_id != audio_offset - 1:
        raise ValueError(f"expected [stop] ({stop_id}) right before the audio ids ({audio_offset})")
    B = len(prompts)
    if not (len(max_new_tokens) == len(generators) == B):
        raise ValueError("prompts, max_new_tokens and generators must have the same length")
    device = next(model.parameters()).device
    # Full vocabulary: every row but pad (0), which is never an output (an imported Soprano model may have no
    # pad token at all: its row 0 is then zeros, whose logit 0 must not compete).
    lo, hi = (1, model.lm_head.out_features) if full else (stop_id, audio_offset + n_audio)
    head = output_head(model.lm_head, lo, hi)
    width = hi - lo
    stop_col = stop_id - lo  # [stop]'s column in head-slice space

    ids, mask = _left_pad(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    padded = bool((mask == 0).any())
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    forward = _Forward(model, padded, use_cache, fast, max(max_new_tokens), cuda_graphs)
    full_ids, full_pos = ids, positions
    finished = [m <= 0 for m in max_new_tokens]
    counts = [0] * B
    window = sampling.repetition_window
    history = torch.full((B, 0), width, dtype=torch.long)  # ids in head-slice space; pad = width
    if sampling.penalize_prompt:
        history = _left_pad([[t - lo for t in p if lo <= t < hi] or [width] for p in prompts], width)[0]
    step = 0
    while not all(finished):
        h = forward(ids, positions, full_ids, full_pos, mask)
        nxt = _sample(h, head, step, stop_col, history, sampling, generators, min_new_tokens)
        emitted = _emit(nxt, stop_col, finished, counts, max_new_tokens)
        rows = torch.as_tensor(emitted, dtype=torch.long)
        yield StepOutput(step=step, emitted=emitted, codes=nxt[rows] + lo - audio_offset,
                         hidden=h[rows.to(h.device)].float(), finished=list(finished))
        # Rows that are done keep being fed (batch shapes stay fixed); their outputs are ignored.
        tok = torch.where(torch.as_tensor(finished), torch.full_like(nxt, stop_col), nxt)  # head-slice space
        col = torch.where(torch.as_tensor(finished), torch.full_like(nxt, width), nxt)
        history = torch.cat([history, col[:, None]], dim=1)
        if window and history.shape[1] > window:
            history = history[:, -window:]
        ids = (tok + lo)[:, None].to(device)
        positions = positions[:, -1:] + 1
        full_ids = torch.cat([full_ids, ids], dim=1)
        full_pos = torch.cat([full_pos, positions], dim=1)
        if padded:
            mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=device)], dim=1)
        step += 1


def generate(model, prompts: Sequence[Sequence[int]], **kwargs) -> Generation:
    """Run ``generate_steps`` to the end and gather per-row codes and states."""
    B = len(prompts)
    codes: list[list[torch.Tensor]] = [[] for _ in range(B)]
    hidden: list[list[torch.Tensor]] = [[] for _ in range(B)]
    stopped = [False] * B
    max_new = kwargs["max_new_tokens"]
    for out in generate_steps(model, prompts, **kwargs):
        for j, i in enumerate(out.emitted):
            codes[i].append(out.codes[j: j + 1])
            hidden[i].append(out.hidden[j: j + 1])
    d = model.config.hidden_size
    gen = Generation()
    for i in range(B):
        c = torch.cat(codes[i]) if codes[i] else torch.zeros(0, dtype=torch.long)
        gen.codes.append(c)
        gen.hidden.append(torch.cat(hidden[i]) if hidden[i] else torch.zeros(0, d))
        stopped[i] = c.numel() < max_new[i]
    gen.stopped = stopped
    return gen
