"""The LLM's export directory: a Hugging Face model dir (``save_pretrained``) + ``vocab.json`` +
``frontend.json``. Loadable by ``AutoModelForCausalLM.from_pretrained`` with no custom code.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from llmtts.dist.checkpoint import replace_dir
from llmtts.errors import UserError
from llmtts.llm.model import load_model
from llmtts.llm.tokenizer import Frontend
from llmtts.llm.vocab import Vocab


def save_export(model, vocab: Vocab, frontend: Frontend, out_dir: str | Path, atomic: bool = True) -> Path:
    """Write the export; ``atomic``: into ``out_dir.tmp`` first, then renamed over ``out_dir`` (the
    trainer already hands stages a temporary directory, so it passes ``atomic=False``)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp") if atomic else out_dir
    if not atomic:
        out_dir.mkdir(parents=True, exist_ok=True)
    elif tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    if model.get_input_embeddings().weight.shape[0] < vocab.size:
        raise UserError(f"model has {model.get_input_embeddings().weight.shape[0]} embedding rows "
                        f"but the vocabulary needs {vocab.size}")
    model.config.use_cache = True  # inference default for whoever loads the export
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
    finally:
        model.config.use_cache = False
    vocab.save(tmp / "vocab.json")
    frontend.save(tmp)
    if not atomic:
        return out_dir
    return replace_dir(tmp, out_dir)


def resolve_llm_dir(path: str | Path) -> Path:
    """A run directory or its export directory -> the export directory."""
    try:
        from llmtts.dist.checkpoint import resolve_export
    except ImportError:  # keep working if the dist package is absent
        p = Path(path)
        return p / "export" if (p / "export").is_dir() else p
    return resolve_export(path)


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
