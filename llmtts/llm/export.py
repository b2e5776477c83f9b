"""The LLM's export directory: a Hugging Face model dir (``save_pretrained``) + ``vocab.json`` +
``frontend.json`` (+ ``inference.json``: the recipe's sampling defaults, when it sets any). Loadable by
``AutoModelForCausalLM.from_pretrained`` with no custom code.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from llmtts.export_dir import refuse_non_finite
from llmtts.io import check_output_dir, replace_dir, temp_dir_beside
from llmtts.errors import UserError
from llmtts.io import write_json_atomic
from llmtts.llm.tokenizer import Frontend
from llmtts.llm.vocab import Vocab

if TYPE_CHECKING:
    from transformers import Qwen3ForCausalLM

INFERENCE_FILE = "inference.json"
# Synthesis options an export may carry besides the sampling ones (llmtts.infer.sampling.SamplingConfig):
# how long a sentence may run depends on the codec's token rate, i.e. on the recipe.
INFERENCE_EXTRA = {"max_tokens": int, "tokens_per_text_id": float}


def inference_keys() -> dict[str, type]:
    from llmtts.infer.sampling import SamplingConfig

    # field types are strings under ``from __future__ import annotations``
    keys = {f.name: int if f.type in ("int", int) else float for f in fields(SamplingConfig)}
    return {**keys, **INFERENCE_EXTRA}


def check_inference(values: dict, source: str) -> dict:
    """The inference defaults without unset (None) entries, checked: known keys, numbers, valid sampling.
    ``source`` names the file or config key in the one-line error."""
    from llmtts.infer.sampling import SamplingConfig

    if not isinstance(values, dict):
        raise UserError(f"{source}: expected a mapping of inference defaults, got {type(values).__name__}")
    keys = inference_keys()
    out = {}
    for k, v in values.items():
        if v is None:
            continue
        if k not in keys:
            raise UserError(f"{source}: unknown key '{k}' (valid: {', '.join(sorted(keys))})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (keys[k] is int and v != int(v)):
            raise UserError(f"{source}: '{k}' must be {'an integer' if keys[k] is int else 'a number'}, got {v!r}")
        out[k] = keys[k](v)
    try:
        SamplingConfig(**{k: v for k, v in out.items() if k not in INFERENCE_EXTRA}).validate()
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    if out.get("max_tokens", 1) < 1:
        raise UserError(f"{source}: 'max_tokens' must be >= 1, got {out['max_tokens']}")
    if out.get("tokens_per_text_id", 1.0) <= 0:
        raise UserError(f"{source}: 'tokens_per_text_id' must be > 0, got {out['tokens_per_text_id']}")
    return out


# What an LLM export folder holds (an export written before the output marker is recognised by these names).
EXPORT_NAMES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
                "vocab.json", "frontend.json", INFERENCE_FILE, "tokenizer")


def save_export(model, vocab: Vocab, frontend: Frontend, out_dir: str | Path, atomic: bool = True,
                inference: dict | None = None, inputs=()) -> Path:
    """Write the export; ``atomic``: into a unique temporary folder beside ``out_dir``, then swapped in through the
    output policy (``io.replace_dir``: never over a foreign folder or an input, ``inputs``); the trainer already
    hands stages a temporary directory of its own, so it passes ``atomic=False``. ``inference``: the
    recipe's synthesis defaults (``LLMConfig.inference``; None entries = the inference code's defaults),
    written to ``inference.json`` when any is set; ``llmtts.TTS.load`` uses them unless told otherwise."""
    out_dir = Path(out_dir)
    defaults = check_inference(inference or {}, "LLM config inference")
    if model.get_input_embeddings().weight.shape[0] < vocab.size:
        raise UserError(f"model has {model.get_input_embeddings().weight.shape[0]} embedding rows "
                        f"but the vocabulary needs {vocab.size}")
    if atomic:
        check_output_dir(out_dir, inputs, recognised=EXPORT_NAMES)  # before any work: refused, nothing written
        tmp = temp_dir_beside(out_dir)
    else:
        tmp = out_dir
        tmp.mkdir(parents=True, exist_ok=True)
    try:
        model.config.use_cache = True  # inference default for whoever loads the export
        try:
            model.save_pretrained(str(tmp), safe_serialization=True)
        finally:
            model.config.use_cache = False
        vocab.save(tmp / "vocab.json")
        frontend.save(tmp)
        if defaults:
            write_json_atomic(tmp / INFERENCE_FILE, defaults)
    except BaseException:
        if atomic:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not atomic:
        return out_dir
    return replace_dir(tmp, out_dir, inputs=inputs, recognised=EXPORT_NAMES, writer="llmtts llm export")


def resolve_llm_dir(path: str | Path) -> Path:
    """A run directory or its export directory -> the export directory."""
    from llmtts.export_dir import resolve_export

    return resolve_export(path)


def load_inference(path: str | Path) -> dict:
    """The export's inference defaults (``inference.json``), checked; ``{}`` for an export without one
    (older exports keep the inference code's defaults)."""
    f = resolve_llm_dir(path) / INFERENCE_FILE
    if not f.is_file():
        return {}
    try:
        values = json.loads(f.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{f}: not valid JSON ({exc})") from None
    return check_inference(values, str(f))


def load_model(path: str | Path, dtype: torch.dtype = torch.float32,
               attn_implementation: str = "sdpa") -> Qwen3ForCausalLM:
    """Load a Qwen3 causal LM from a local Hugging Face directory (safetensors only, no hub)."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: not a Hugging Face model directory (no config.json)")
    model_type = _model_type(path / "config.json")
    if model_type != "qwen3":  # the backbone this project trains, decodes and exports; anything else is refused here
        raise UserError(f"{path}: model_type {model_type!r} in config.json; the LLM must be a Qwen3 causal LM")
    try:
        with _quiet_transformers():  # its load report is many lines; the one-line error below says what matters
            model, info = AutoModelForCausalLM.from_pretrained(
                str(path), local_files_only=True, use_safetensors=True, dtype=dtype,
                attn_implementation=attn_implementation, output_loading_info=True)
    except Exception as exc:  # the boundary of a foreign folder: a corrupt file, shapes, a config transformers refuses
        if isinstance(exc, SafetensorError):
            exc = ValueError(f"weights file unreadable: {exc}")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if getattr(exc, "__cause__", None) is not None and "validation error" in first.lower():
            first = str(exc.__cause__).strip().splitlines()[0]
        if "mismatched" in first or "ignore_mismatched_sizes" in first:
            first = "config.json does not match the weights' shapes"
        raise UserError(f"{path}: cannot load the model ({first})") from None
    # Keys the weights lack would be left at random init, extra ones ignored: either way not the trained model.
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(map(str, info.get(kind) or []))
        if keys:
            raise UserError(f"{path}: config.json does not match the weights ({kind.replace('_', ' ')}: "
                            f"{keys[0]}{f' and {len(keys) - 1} more' if len(keys) > 1 else ''})")
    refuse_non_finite(model.state_dict(), path)  # also every import (Soprano's LLM loads through here)
    model.config.use_cache = False
    return model


def _model_type(config_json: Path) -> str:
    try:
        cfg = json.loads(config_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{config_json}: not valid JSON ({exc})") from None
    return str(cfg.get("model_type", "")) if isinstance(cfg, dict) else ""


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_llm(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
             attn_implementation: str = "sdpa"):
    """``(model, vocab, frontend)`` from a run dir or export dir; model in eval mode on ``device``."""
    d = resolve_llm_dir(path)
    vocab = Vocab.load(d / "vocab.json")
    frontend = Frontend.load(d / "frontend.json")
    model = load_model(d, dtype=dtype, attn_implementation=attn_implementation)
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < vocab.size:
        raise UserError(f"{d}: model has {rows} embedding rows but vocab.json needs {vocab.size}")
    if vocab.text_symbols and len(frontend.tokenizer) != vocab.n_text:
        raise UserError(f"{d}: frontend.json has {len(frontend.tokenizer)} symbols but vocab.json {vocab.n_text}")
    return model.to(device).eval(), vocab, frontend
