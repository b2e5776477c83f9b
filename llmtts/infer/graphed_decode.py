"""The decode step with every shape fixed, captured once as a CUDA graph and replayed per token.

Why: on a GPU a soprano-sized step is ~700 tiny kernels; launching them from Python costs more than running
them (batch 1). ``StaticShapeDecoder`` makes the step's shapes and addresses constant — it attends over the
whole preallocated cache under an additive mask (``-inf`` past the current length, exactly 0 weight) and writes
the new key/value at a slot index held in a device tensor — so ``GraphedDecoder`` can record it once
(``torch.cuda.CUDAGraph``) and replay it with one launch per token. Same math as ``StaticDecoder.step``
(tests/infer/test_graphed_decode.py checks the static-shape step against it on the CPU; the capture itself needs
CUDA and runs in scripts/gpu-smoke.sh). ``LLMTTS_CUDA_GRAPHS=0`` turns graphs off.
"""
from __future__ import annotations

import logging
import os

import torch

from llmtts.infer.fast_decode import StaticDecoder
from llmtts.infer.step_plan import layer_step

log = logging.getLogger(__name__)


_CAPTURE_FAILED = False  # once a capture failed in this process, later generations decode eagerly at once


def cuda_graphs_enabled(device: torch.device) -> bool:
    return device.type == "cuda" and os.environ.get("LLMTTS_CUDA_GRAPHS", "1") != "0" and not _CAPTURE_FAILED


class StaticShapeDecoder(StaticDecoder):
    """``StaticDecoder`` whose step reads its inputs from fixed buffers and touches only fixed-size tensors."""

    def __init__(self, model, cache, attention_mask: torch.Tensor | None, max_len: int):
        super().__init__(model, cache, attention_mask, max_len)
        for t in self.k + self.v:  # masked positions get weight 0, but 0 * NaN garbage would still be NaN
            t[:, :, self.P:].zero_()
        k0 = self.k[0]
        device, dtype = k0.device, k0.dtype
        # Additive mask over the whole cache: 0 on written, unpadded positions; -inf on padding and the future.
        mask = torch.full((self.B, 1, 1, max_len), float("-inf"), dtype=dtype, device=device)
        mask[..., : self.P] = 0 if self.bias is None else self.bias[..., : self.P]
        self.mask = mask
        self.slot = torch.tensor([self.P], device=device)  # the cache position this step writes
        self.ids = torch.zeros(self.B, dtype=torch.long, device=device)
        self.positions = torch.zeros(self.B, dtype=torch.long, device=device)
        self.out = torch.zeros(self.B, model.config.hidden_size, dtype=dtype, device=device)

    def _static_step(self) -> None:
        """One token per row from ``self.ids`` / ``self.positions`` into ``self.out``; advances ``self.slot``."""
        plan, slot = self.plan, self.slot
        self.mask.index_fill_(3, slot, 0)
        x, rot = plan.embed_and_rotation(self.ids, self.positions)
        for i, p in enumerate(plan.layers):
            def store(k, v, i=i):
                self.k[i].index_copy_(2, slot, k[:, :, None])
                self.v[i].index_copy_(2, slot, v[:, :, None])
                return self.k[i], self.v[i]
            x = layer_step(p, x, rot, store, self.mask)
        self.out.copy_(plan.final_norm(x))
        slot.add_(1)

    def _run(self) -> None:
        self._static_step()

    @torch.inference_mode()
    def step(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``ids [B, 1]``, ``positions [B, 1]`` -> post-final-norm states ``[B, d]`` (a copy)."""
        if self.len >= self.mask.shape[-1]:
            raise RuntimeError(f"decode step {self.len + 1} past the cache's {self.mask.shape[-1]} positions")
        self.ids.copy_(ids[:, 0])
        self.positions.copy_(positions[:, 0])
        self._run()
        self.len += 1
        return self.out.clone()


class GraphedDecoder(StaticShapeDecoder):
    """``StaticShapeDecoder`` recorded as one CUDA graph at the first step and replayed for every later one."""

    def __init__(self, model, cache, attention_mask: torch.Tensor | None, max_len: int):
        super().__init__(model, cache, attention_mask, max_len)
        self.graph = None

    def _run(self) -> None:
        global _CAPTURE_FAILED
        if self.graph is None:
            try:
                self.graph = self._capture()
            except Exception as e:  # anything that cannot be recorded on this setup: decode eagerly instead
                log.warning("CUDA graph capture failed, decoding without graphs from now on: %s",
                            str(e).splitlines()[0])
                _CAPTURE_FAILED, self.graph = True, False
        if self.graph is False:
            self._static_step()
        else:
            with torch.cuda.device(self.out.device):
                self.graph.replay()

    def _capture(self) -> "torch.cuda.CUDAGraph":
        # Warm up on a side stream (allocator pools, lazy inits), undo what it wrote, then record. The warm-up
        # writes only the slot this step will overwrite anyway; the mask's slot is 0 either way from here on.
        # Everything on the model's device (streams and graphs belong to the *current* device otherwise: a model
        # on cuda:1 would record an empty graph); "thread_local" keeps other threads' CUDA calls (a data loader,
        # a server thread) out of the recording.
        slot, dev = self.slot.clone(), self.out.device
        try:
            with torch.cuda.device(dev):
                side = torch.cuda.Stream(dev)
                side.wait_stream(torch.cuda.current_stream(dev))
                with torch.cuda.stream(side):
                    for _ in range(2):
                        self.slot.copy_(slot)
                        self._static_step()
                torch.cuda.current_stream(dev).wait_stream(side)
                self.slot.copy_(slot)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=torch.cuda.Stream(dev), capture_error_mode="thread_local"):
                    self._static_step()
                return graph
        finally:  # recording runs no kernel; a failed capture falls back to eager steps: same starting state
            self.slot.copy_(slot)
