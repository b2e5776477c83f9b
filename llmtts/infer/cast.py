"""The model formats ``TTS`` loads an LLM in, and the one function that casts an fp32 model into one. Its own module
(not ``tts.py``) so that ``dtype_choice``, which ``TTS.load`` uses, can cast without importing ``tts``."""
from __future__ import annotations

import torch

from llmtts.errors import UserError

DTYPES = ("fp32", "bf16", "int8", "int4")


def cast_llm(llm, dtype: str):
    """``fp32`` as is (CPU: oneDNN linears, ``onednn.py``); ``bf16`` weights; ``int8`` / ``int4`` weight-only
    linears (``quant.py``, ``quant_int4.py``; int4 is CPU only) with bf16 for the rest where bf16 is native (a GPU,
    an AVX-512 BF16 / AMX CPU) and fp32 elsewhere (emulated bf16 norms and attention cost more than they save).
    Last, q/k/v and gate/up become one product each for the decode steps (``fast_decode.fuse_projections_``)."""
    from llmtts.infer.fast_decode import fuse_projections_
    from llmtts.infer.onednn import use_onednn_linears_
    from llmtts.infer.quant import cpu_has_fast_bf16

    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    cpu = next(llm.parameters()).device.type == "cpu"
    if dtype == "int8":
        from llmtts.infer.quant import quantize_int8_

        quantize_int8_(llm)
    if dtype == "int4":
        from llmtts.infer.quant_int4 import quantize_int4_

        if not cpu:
            raise UserError("dtype int4 runs on the CPU only (torch's packed int4 CPU kernel); use int8 or bf16")
        quantize_int4_(llm)
    if dtype == "bf16" or (dtype in ("int8", "int4") and (not cpu or cpu_has_fast_bf16())):
        llm.to(torch.bfloat16)
    if cpu:
        use_onednn_linears_(llm)  # the fp32 linears left (all of them at fp32)
    fuse_projections_(llm)
    return llm
