"""``--init-from PATH``: start from a local Hugging Face causal LM, fitting its embeddings to our vocabulary.

If PATH holds a ``vocab.json`` (an export of this framework), rows are carried over *by meaning*:
specials, audio codes, speakers by name, text symbols by character. Otherwise the source ids mean
nothing in our layout: the transformer body is kept and both embedding matrices start fresh.
Either way a one-line report says what was kept.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from llmtts.errors import UserError
from llmtts.llm.export import load_model
from llmtts.llm.model import replace_embeddings
from llmtts.llm.vocab import AUDIO_OFFSET, SPECIALS, Vocab

log = logging.getLogger(__name__)


def row_mapping(src: Vocab, dst: Vocab) -> dict[int, int]:
    """dst id -> src id for every id whose meaning exists in both vocabularies."""
    m = {i: i for i in range(len(SPECIALS))}
    for c in range(min(src.n_audio, dst.n_audio)):
        m[AUDIO_OFFSET + c] = AUDIO_OFFSET + c
    for name in dst.speakers:
        if name in src.speakers:
            m[dst.speaker_id(name)] = src.speaker_id(name)
    if src.text_symbols and dst.text_symbols:
        src_index = {s: i for i, s in enumerate(src.text_symbols)}
        for j, s in enumerate(dst.text_symbols):
            if s in src_index:
                m[dst.text_offset + j] = src.text_offset + src_index[s]
    elif not src.text_symbols and not dst.text_symbols and src.n_text == dst.n_text:
        for j in range(dst.n_text):  # the same HF tokenizer size: ids carry over
            m[dst.text_offset + j] = src.text_offset + j
    return m


def _fresh_like(weight: torch.Tensor, rows: int, std: float) -> torch.Tensor:
    return torch.randn(rows, weight.shape[1], dtype=weight.dtype) * std


def init_from(path: str | Path, dst: Vocab, vocab_size: int, attn_implementation: str = "sdpa"):
    """Load ``path`` and resize/remap its input and output embeddings to ``vocab_size`` rows laid out as
    ``dst``. Returns ``(model, report)``."""
    path = Path(path)
    if (path / "export").is_dir():
        path = path / "export"
    model = load_model(path, attn_implementation=attn_implementation)
    if model.config.model_type != "qwen3":
        raise UserError(f"--init-from {path}: model type '{model.config.model_type}' is not qwen3")
    src = Vocab.load(path / "vocab.json") if (path / "vocab.json").is_file() else None
    std = float(getattr(model.config, "initializer_range", 0.02))
    emb_in = model.get_input_embeddings().weight.data
    emb_out = model.get_output_embeddings().weight.data
    new_in = _fresh_like(emb_in, vocab_size, std)
    new_out = _fresh_like(emb_out, vocab_size, std)
    mapping = row_mapping(src, dst) if src is not None else {}
    if src is not None and src == dst and vocab_size == emb_in.shape[0]:
        # The very same vocabulary (a fine-tune of an export on its own layout): every row carries over, also the
        # pad row and rows no token names (an imported Soprano LLM keeps them for `export soprano`).
        mapping = {i: i for i in range(vocab_size)}
    if mapping:
        d = torch.tensor(sorted(mapping))
        s = torch.tensor([mapping[i] for i in sorted(mapping)])
        new_in[d] = emb_in[s]
        new_out[d] = emb_out[s]
    replace_embeddings(model, new_in, new_out)
    model.config.use_cache = False
    if src is None:
        report = (f"init from {path}: transformer body kept; no vocab.json there, so all {vocab_size} embedding "
                  f"rows start fresh (source had {emb_in.shape[0]})")
    else:
        report = (f"init from {path}: kept {len(mapping)} of {dst.used} embedding rows by meaning "
                  f"(specials, {min(src.n_audio, dst.n_audio)} audio codes, speakers and text symbols in both); "
                  f"{vocab_size - len(mapping)} rows start fresh; source had {emb_in.shape[0]} rows")
    log.info(report)
    return model, report
