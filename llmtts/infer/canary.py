"""The kernel canary: a reduced-precision LLM is checked against fp32 on this CPU before it speaks.

Why: bf16 / int8 / int4 products run through ISA-specific kernels (AVX2, AVX-512, AMX), packed layouts and fused
projections. A kernel or layout that is wrong on one CPU family produces fluent-looking noise, not an error
(int4 fused projections on AVX-512 did, while every test passed on AVX2). So at load, on a fixed prompt:

1. fp32 generates ``CANARY_STEPS`` greedy tokens (the reference);
2. **kernel check** — the cast model, through the real inference path (prefill, then the fused static-cache
   decode steps), teacher-forced on those tokens, must give the states an fp32 model holding the format's own
   rounded weights gives (``format_weights_``: the same quantisation, no kernel). A correct kernel differs from
   that only by bf16 activation rounding (a few % of a state); a wrong kernel or packing gives unrelated states
   (relative distance ~1: two independent states of one norm are sqrt(2) apart). ``KERNEL_REL_BOUND`` splits the
   two;
3. **format check** — the format's own loss, kernel-free: at each step, the token the fp32 model on the format's
   weights picks must be at most ``REGRET_NATS`` less likely under fp32 than fp32's own pick, at
   ``FORMAT_MIN_AGREEMENT`` of the steps (a warning below ``FORMAT_WARN_AGREEMENT``). Exact token agreement would punish near-ties (a random-weight model's
   logits are nearly flat: int4 matched 29 % of tokens there, yet every pick was within 0.5 nat); a pick fp32
   finds e times less likely is a real mistake. A format too coarse for a model fails here on every CPU.

Either failure is a one-line ``UserError`` naming the dtype, the number and the CPU's kernel family: no user gets
silent garbage from a kernel this project never ran on their CPU. ``LLMTTS_CANARY=0`` skips it (tests of the
cast model itself; a benchmark that already checked). Costs one fp32 and one cast generation of
``CANARY_STEPS`` tokens at load (~1 s for soprano-80m on 2 cores).
"""
from __future__ import annotations

import copy
import functools
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn

from llmtts.errors import UserError

log = logging.getLogger(__name__)

CANARY_TEXT = "the quick brown fox jumps over the lazy dog."
CANARY_STEPS = 24
# States of a correct kernel vs the format's fp32 emulation: bf16 activations and attention, 2^-8 per rounding,
# a few roundings per layer (measured: see docs/inference.md "Kernel canary"); a wrong kernel: ~1.
KERNEL_REL_BOUND = 0.25
# The format's picks within REGRET_NATS of fp32's best: refused below FORMAT_MIN_AGREEMENT of the steps, a warning
# below FORMAT_WARN_AGREEMENT. Measured (docs/inference.md): a destroyed format 0 %; int4 on a random-weight
# soprano-80m checkpoint, whose near-flat logits any rounding reorders, 42 %; trained models 83-100 % (int4 on the
# quick-start model: 83 %, judge WER 0.059 vs fp32 0.046). Between the two bounds the judge decides
# (benchmarks/quant_quality.py), not this check.
FORMAT_MIN_AGREEMENT = 0.25
FORMAT_WARN_AGREEMENT = 0.9
REGRET_NATS = 1.0


@dataclass
class CanaryResult:
    dtype: str
    kernel_rel: float  # worst per-token ||cast - emulated|| / ||emulated||
    agreement: float  # share of steps where the format's pick is within REGRET_NATS of fp32's best
    steps: int


@dataclass
class Fp32Reference:
    """fp32's greedy continuation of the canary prompt and the states it was sampled from: computed once, shared
    by every format checked against it (``dtype_choice`` checks several)."""

    prompt: list[int]
    tokens: list[int]  # LLM ids
    states: torch.Tensor  # [steps, d]: the state each token was picked from


@functools.cache
def cpu_kernel_family() -> str:
    """What this process's kernels run on, for error messages and reports: torch's dispatch level (ATen) and
    the CPU features that pick oneDNN's and the packed kernels' paths."""
    cap = torch.backends.cpu.get_cpu_capability()
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    extra = [name for name, flag in (("AMX", "amx_tile"), ("AVX512-BF16", "avx512_bf16"),
                                     ("AVX512-VNNI", "avx512_vnni")) if flag in flags and cap.startswith("AVX512")]
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return f"ATen {cap}" + (f" ({', '.join(extra)})" if extra else "") + (f", oneDNN capped at {onednn}"
                                                                            if onednn else "")


def format_weights_(model: nn.Module, dtype: str) -> nn.Module:
    """Round an fp32 model's weights in place to exactly what ``dtype`` stores, kept in fp32 (no kernel involved):
    int8 per-row scales (bf16) times int8 codes, int4 groups as ``quant_int4`` quantises them, bf16 every
    parameter. Which linears a format quantises follows ``quantize_int8_`` / ``quantize_int4_``."""
    with torch.no_grad():
        if dtype == "bf16":
            for p in model.parameters():
                p.copy_(p.bfloat16().float())
            return model
        for m in model.modules():
            if not isinstance(m, nn.Linear):
                continue
            w = m.weight.float()
            if dtype == "int8":  # Int8Linear's codes come from the fp32 scale; it stores and applies it in bf16
                scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
                q = torch.round(w / scale[:, None]).clamp(-127, 127)
                m.weight.copy_(q * scale.bfloat16().float()[:, None])
            elif dtype == "int4":
                from llmtts.infer.quant_int4 import DEFAULT_GROUP_SIZE, dequantize_groups, pick_group, quantize_groups

                g = pick_group(m.in_features, DEFAULT_GROUP_SIZE)
                if g is None:
                    continue
                q, scale, zero = quantize_groups(w, g)
                m.weight.copy_(dequantize_groups(q, scale.bfloat16().float(), zero.bfloat16().float()))
            if m.bias is not None:
                m.bias.copy_(m.bias.bfloat16().float())
    return model


def _head_logits(model, states: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    w = model.lm_head.weight[lo:hi].float()
    b = None if model.lm_head.bias is None else model.lm_head.bias[lo:hi].float()
    return nn.functional.linear(states.float(), w, b)


@torch.inference_mode()
def teacher_forced_states(model, ids: list[int], n: int) -> torch.Tensor:
    """The generic forward over the whole sequence: the last ``n`` positions' post-norm states ``[n, d]``."""
    out = model.model(input_ids=torch.tensor([ids], device=model.lm_head.weight.device), use_cache=False)
    return out.last_hidden_state[0, -n:].float()


@torch.inference_mode()
def decoded_states(model, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    """The inference path itself (prefill, then single-token steps through ``fast_decode`` where it applies),
    teacher-forced: the state after the prompt and after each of ``tokens[:-1]``, ``[len(tokens), d]``."""
    from llmtts.infer.generate import _Forward

    device = next(model.parameters()).device
    fwd = _Forward(model, padded=False, use_cache=True, fast=True, max_new=len(tokens) + 1, cuda_graphs=False)
    ids = torch.tensor([prompt], device=device)
    pos = torch.arange(len(prompt), device=device)[None]
    states = [fwd(ids, pos, ids, pos, None)]
    for t in tokens[:-1]:
        ids, pos = torch.tensor([[t]], device=device), pos[:, -1:] + 1
        states.append(fwd(ids, pos, None, None, None))
    return torch.cat(states).float()


def greedy(model, prompt: list[int], vocab, steps: int) -> Fp32Reference:
    """``model``'s greedy continuation of ``prompt`` ([stop] masked so every step counts) and its states."""
    from llmtts.infer.generate import generate
    from llmtts.infer.sampling import SamplingConfig

    out = generate(model, [prompt], stop_id=vocab.stop, audio_offset=vocab.audio_offset, n_audio=vocab.n_audio,
                   max_new_tokens=[steps], min_new_tokens=steps, generators=[torch.Generator()],
                   sampling=SamplingConfig(temperature=0.0, repetition_penalty=1.0), cuda_graphs=False)
    return Fp32Reference(list(prompt), (out.codes[0] + vocab.audio_offset).tolist(), out.hidden[0].float())


@torch.inference_mode()
def run_canary(fp32_model, cast_model, dtype: str, prompt: list[int], vocab, steps: int = CANARY_STEPS,
               reference: Fp32Reference | None = None) -> CanaryResult:
    """Compare ``cast_model`` (``cast_llm(copy of fp32_model, dtype)``) with ``fp32_model`` on ``prompt``
    (``reference``: fp32's continuation, when already computed for this prompt)."""
    reference = reference or greedy(fp32_model, prompt, vocab, steps)
    tokens, steps = reference.tokens, len(reference.tokens)
    emulated = format_weights_(copy.deepcopy(fp32_model), dtype)
    ref = teacher_forced_states(emulated, prompt + tokens[:-1], steps)
    got = decoded_states(cast_model, prompt, tokens)
    kernel_rel = float(((got - ref).norm(dim=1) / ref.norm(dim=1).clamp(min=1e-12)).max())
    lo, hi = vocab.stop, vocab.audio_offset + vocab.n_audio
    logits = _head_logits(emulated, ref, lo, hi)
    logits[:, 0] = float("-inf")
    picks = logits.argmax(1)
    # fp32's log-probabilities at the same positions (from the states its own tokens were picked from): how much
    # less likely fp32 finds the format's pick.
    fp32_logp = torch.log_softmax(_head_logits(fp32_model, reference.states, lo, hi)[:, 1:], -1)
    regret = fp32_logp.max(1).values - fp32_logp.gather(1, (picks - 1).clamp(min=0)[:, None])[:, 0]
    agreement = float((regret <= REGRET_NATS).float().mean())
    return CanaryResult(dtype, kernel_rel, agreement, steps)


def canary_enabled(dtype: str) -> bool:
    """A reduced precision, and not turned off with ``LLMTTS_CANARY=0``."""
    return dtype != "fp32" and os.environ.get("LLMTTS_CANARY", "1") != "0"


def check_cast(fp32_model, cast_model, dtype: str, prompt: list[int], vocab) -> CanaryResult | None:
    """``run_canary`` where ``canary_enabled`` (else None); a failed check is a one-line ``UserError``."""
    if not canary_enabled(dtype):
        return None
    r = run_canary(fp32_model, cast_model, dtype, prompt, vocab)
    if r.kernel_rel > KERNEL_REL_BOUND:
        raise UserError(f"--dtype {dtype} is broken on this CPU ({cpu_kernel_family()}): its kernels' states are "
                        f"{r.kernel_rel:.2f} away from the format's fp32 emulation (bound {KERNEL_REL_BOUND}); "
                        "use --dtype fp32 or another dtype, and report this CPU")
    if r.agreement < FORMAT_MIN_AGREEMENT:
        raise UserError(f"--dtype {dtype} is too lossy for this model: its weights pick a token fp32 finds as "
                        f"likely (within {REGRET_NATS:g} nat) at {r.agreement:.0%} of {r.steps} steps (needs "
                        f"{FORMAT_MIN_AGREEMENT:.0%}); use a wider dtype (int8 or bf16)")
    if r.agreement < FORMAT_WARN_AGREEMENT:
        log.warning("--dtype %s picks a token fp32 finds as likely (within %g nat) at only %.0f%% of %d steps on this "
                    "model: judge it before use (benchmarks/quant_quality.py)", dtype, REGRET_NATS,
                    100 * r.agreement, r.steps)
    return r
