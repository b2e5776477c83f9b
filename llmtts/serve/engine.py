"""Step-level (continuous) batching for a Qwen3 LLM: rows join and leave a running batch between decode steps.

``generate_steps`` runs a fixed set of prompts to the end; a server needs a request that arrives mid-way to join
at the next step and a finished one to leave at once. ``SlotBatch`` keeps one KV buffer per layer,
``[max_rows, kv_heads, max_len, head_dim]``; row ``i`` holds its own sequence at positions ``0 .. len_i - 1``
(no left padding) and an additive mask row that is ``-inf`` past ``len_i``. A step feeds one token per live row,
writes each row's new key/value at that row's own length and attends over ``max(len) + 1`` positions.

A joining row is prefilled alone (the generic transformers forward, exactly as ``generate_steps`` does for one
prompt) and its cache copied into its slot; a leaving row's slot is refilled by the last row (rows stay
contiguous, so a step computes only live rows). The per-layer math is ``fast_decode.StaticDecoder.step`` with a
per-row write position; masked positions get weight exactly 0, so a row's states equal its one-prompt run up to
float rounding of the batched kernels (tests compare audio within ``assert_audio_close``).
"""
from __future__ import annotations

import torch

from llmtts.errors import UserError


class SlotBatch:
    def __init__(self, model, max_rows: int, max_len: int = 256):
        from llmtts.infer.fast_decode import supports_fast_decode
        from llmtts.infer.step_plan import DecodePlan

        if not supports_fast_decode(model):
            raise UserError("the server's batching engine needs a Qwen3 LLM with full attention "
                            f"(model_type {getattr(model.config, 'model_type', '?')!r})")
        self.model, self.m, self.max_rows = model, model.model, max_rows
        self.plan = DecodePlan(model)
        cfg = model.config
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        p = next(model.parameters())
        self.device = p.device
        self.dtype = p.dtype if p.dtype.is_floating_point else torch.bfloat16
        self.max_len = 0
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.bias = torch.empty(0)
        self.lens: list[int] = []  # per live row: tokens in its cache
        self._grow(max_len)

    @property
    def n(self) -> int:
        return len(self.lens)

    def _grow(self, need: int) -> None:
        """Buffers at least ``need`` positions long (doubling; old contents kept)."""
        if need <= self.max_len:
            return
        new = max(need, 2 * self.max_len)
        shape = (self.max_rows, self.kv_heads, new, self.head_dim)
        k = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.m.layers]
        v = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.m.layers]
        bias = torch.full((self.max_rows, 1, 1, new), float("-inf"), dtype=self.dtype, device=self.device)
        if self.max_len:
            for i in range(len(k)):
                k[i][:, :, : self.max_len] = self.k[i]
                v[i][:, :, : self.max_len] = self.v[i]
            bias[..., : self.max_len] = self.bias
        self.k, self.v, self.bias, self.max_len = k, v, bias, new

    @torch.inference_mode()
    def join(self, prompt: list[int], reserve: int) -> torch.Tensor:
        """Prefill ``prompt`` into a new last row; returns its post-norm state ``[d]`` (the first token's source).
        ``reserve``: tokens it may still generate (the buffers grow to fit)."""
        from transformers import DynamicCache

        if self.n >= self.max_rows:
            raise RuntimeError("SlotBatch is full")
        ids = torch.as_tensor([list(prompt)], dtype=torch.long, device=self.device)
        pos = torch.arange(ids.shape[1], device=self.device)[None]
        out = self.m(input_ids=ids, attention_mask=None, position_ids=pos, cache=DynamicCache(), use_cache=True)
        P = ids.shape[1]
        self._grow(P + reserve + 1)
        r = self.n
        for i, layer in enumerate(out.cache.layers):
            self.k[i][r, :, :P] = layer.keys[0]
            self.v[i][r, :, :P] = layer.values[0]
        self.bias[r].fill_(float("-inf"))
        self.bias[r, 0, 0, :P] = 0
        self.lens.append(P)
        return out.last_hidden_state[0, -1]

    def leave(self, r: int) -> int | None:
        """Drop row ``r``; the last row moves into its slot. Returns the moved row's old index (None if none)."""
        last = self.n - 1
        if r != last:
            for i in range(len(self.k)):
                self.k[i][r] = self.k[i][last]
                self.v[i][r] = self.v[i][last]
            self.bias[r] = self.bias[last]
            self.lens[r] = self.lens[last]
        self.lens.pop()
        return last if r != last else None

    @torch.inference_mode()
    def step(self, ids: list[int]) -> torch.Tensor:
        """Feed token ``ids[i]`` to live row ``i``; returns post-final-norm states ``[n, d]``."""
        from llmtts.infer.step_plan import layer_step

        plan, B = self.plan, self.n
        lens = torch.as_tensor(self.lens, dtype=torch.long, device=self.device)
        rows = torch.arange(B, device=self.device)
        L = max(self.lens) + 1
        self._grow(L)
        # position = tokens before this one (no padding)
        x, rot = plan.embed_and_rotation(torch.as_tensor(ids, dtype=torch.long, device=self.device), lens)
        self.bias[rows, 0, 0, lens] = 0
        bias = self.bias[:B, ..., :L]
        for i, p in enumerate(plan.layers):
            def store(k, v, i=i):  # row r writes at its own length lens[r]; all attend over 0..max(len)
                self.k[i][rows, :, lens], self.v[i][rows, :, lens] = k, v
                return self.k[i][:B, :, :L], self.v[i][:B, :, :L]
            x = layer_step(p, x, rot, store, bias)
        self.lens = [n + 1 for n in self.lens]
        return plan.final_norm(x)
