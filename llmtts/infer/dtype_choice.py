"""``--dtype auto``: the fastest LLM weight format that is correct on this CPU, for this model, measured.

Which format is fastest depends on the host (measured side by side: int8 on an AMD EPYC with AVX2, where torch's
int4 kernel is compute-bound; int4 on AVX-512 hosts), and which is correct depends on the host's kernels and the
model (``canary.py``). So nothing is assumed: each candidate is cast from the fp32 model, checked by the canary
(refused or warned formats are out: a warning means the judge has not cleared it), and timed on a few batch-1
decode steps of the canary sentence; the fastest survivor wins, fp32 when none beats it. Costs a cast, a canary
and a few steps per candidate at load (~2-3 s each for soprano-80m on 2 cores). ``llmtts info MODEL --formats``
prints the table.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import torch

from llmtts.errors import UserError
from llmtts.infer.canary import (CANARY_STEPS, FORMAT_WARN_AGREEMENT, KERNEL_REL_BOUND, CanaryResult, greedy,
                                 run_canary)

log = logging.getLogger(__name__)

CANDIDATES = ("fp32", "bf16", "int8", "int4")
TIMED_STEPS = 16


@dataclass
class FormatRow:
    dtype: str
    ms_per_token: float | None  # None: not timed (refused)
    usable: bool  # the canary cleared it (no refusal, no warning): auto may pick it
    note: str  # the canary's verdict
    canary: CanaryResult | None = None  # None for fp32 (the reference itself)


def candidates_for(device: torch.device) -> tuple[str, ...]:
    """int4 runs on the CPU only; bf16 is slow where it is emulated (a CPU without native bf16)."""
    from llmtts.infer.quant import cpu_has_fast_bf16

    if device.type != "cpu":
        return ("fp32", "bf16", "int8")
    return tuple(d for d in CANDIDATES if d != "bf16" or cpu_has_fast_bf16())


@torch.inference_mode()
def _ms_per_token(model, prompt: list[int], vocab) -> float:
    greedy(model, prompt, vocab, 2)  # warm-up: first-call allocations and kernel selection
    t = time.perf_counter()
    greedy(model, prompt, vocab, TIMED_STEPS)
    return (time.perf_counter() - t) / TIMED_STEPS * 1000


def measure_formats(fp32_model, prompt: list[int], vocab, dtypes=None) -> list[FormatRow]:
    """One row per candidate format (``candidates_for`` the model's device unless ``dtypes`` is given)."""
    from llmtts.infer.cast import cast_llm

    device = next(fp32_model.parameters()).device
    reference = greedy(fp32_model, prompt, vocab, CANARY_STEPS)  # once, for every candidate
    rows = []
    for dtype in dtypes or candidates_for(device):
        if dtype == "int4" and device.type != "cpu":
            rows.append(FormatRow(dtype, None, False, "CPU only"))
            continue
        cast = cast_llm(copy.deepcopy(fp32_model), dtype)
        note, usable, r = "reference", True, None
        if dtype != "fp32":
            r = run_canary(fp32_model, cast, dtype, prompt, vocab, reference=reference)
            note = f"canary: states {r.kernel_rel:.3f} (bound {KERNEL_REL_BOUND}), fp32-like picks {r.agreement:.0%}"
            usable = r.kernel_rel <= KERNEL_REL_BOUND and r.agreement >= FORMAT_WARN_AGREEMENT
        rows.append(FormatRow(dtype, _ms_per_token(cast, prompt, vocab) if usable else None, usable, note, r))
        del cast
    return rows


def pick(rows: list[FormatRow]) -> str:
    """The fastest usable format (fp32 is always usable: it is the reference)."""
    timed = [r for r in rows if r.usable and r.ms_per_token is not None]
    if not timed:
        raise UserError("no weight format could be timed on this machine")
    return min(timed, key=lambda r: r.ms_per_token).dtype


def describe(rows: list[FormatRow]) -> list[str]:
    best = pick(rows)
    return [f"{r.dtype:5} " + (f"{r.ms_per_token:7.1f} ms/token" if r.ms_per_token is not None else "   not timed  ")
            + f"  {'usable' if r.usable else 'excluded'}  {r.note}" + ("  <- auto" if r.dtype == best else "")
            for r in rows]
