"""``llmtts export soprano``: this project's LLM + decoder exports -> a directory ``soprano-tts`` loads with
``SopranoTTS(model_path=DIR)``: ``config.json`` + ``model.safetensors`` (rows back in Soprano's order) +
Soprano's tokenizer files + ``decoder.pth``.

Soprano's runtime fixes the architecture around the LLM: ``SopranoDecoder()`` with its defaults (8 blocks of
768, kernels 1/3, n_fft 2048, hop 512, 512-wide input) and a 512-wide hidden state (``infer_batch`` pads with
``torch.zeros((1, 512, ...))``). Anything else is a one-line error naming the setting. The LLM must carry
Soprano's tokenizer (an import through ``llmtts import soprano``, fine-tuned here or not): the row order of a
model trained from scratch here has no Soprano tokenizer to go with it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from llmtts.errors import UserError
from llmtts.llm.model import replace_embeddings
from llmtts.interop.soprano.decoder import export_decoder
from llmtts.interop.soprano.tokenizer import TOKENIZER_FILES

SOPRANO_HIDDEN = 512


def inverse_rows(weight: torch.Tensor, rows: list[int], n_out: int) -> torch.Tensor:
    """``out[rows[p]] = weight[p]`` for every project row ``p`` that came from Soprano."""
    out = weight.new_zeros(n_out, weight.shape[1])
    idx = torch.tensor([s for s in rows if s >= 0])
    src = torch.tensor([p for p, s in enumerate(rows) if s >= 0])
    out[idx] = weight[src]
    return out


def _original_config(tok_dir: Path) -> dict:
    f = tok_dir / "config.json"
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except ValueError:
        return {}


# A Soprano model folder as this exporter writes it (recognised without the output marker: an older export).
EXPORT_NAMES = ("config.json", "generation_config.json", "model.safetensors", "decoder.pth", *TOKENIZER_FILES)


def export_soprano(llm_path: str | Path, decoder_path: str | Path, out: str | Path) -> Path:
    from llmtts.decoder.export import load_decoder
    from llmtts.io import check_output_dir, replace_dir, temp_dir_beside
    from llmtts.llm.export import load_llm

    out = Path(out)
    # Before any work: never over a foreign folder, an input, or a folder holding one (--out . next to the model).
    check_output_dir(out, [llm_path, decoder_path], recognised=EXPORT_NAMES)
    decoder, _ = load_decoder(decoder_path)
    sd = export_decoder(decoder, f"decoder {decoder_path}")
    model, vocab, frontend = load_llm(llm_path)
    tok = frontend.tokenizer
    if getattr(tok, "kind", None) != "soprano":
        raise UserError(f"LLM {llm_path}: its tokenizer is '{tok.kind}', not Soprano's; only LLMs imported with "
                        "`llmtts import soprano` (fine-tuned or not) carry the tokenizer soprano-tts needs")
    if model.config.model_type != "qwen3":
        raise UserError(f"LLM {llm_path}: model_type {model.config.model_type!r}; soprano-tts loads Qwen3")
    if model.config.hidden_size != SOPRANO_HIDDEN:
        raise UserError(f"LLM {llm_path}: hidden_size {model.config.hidden_size}, soprano-tts needs {SOPRANO_HIDDEN} "
                        "(it pads decoder input with 512-wide zeros)")
    if decoder.cfg.hidden_size != model.config.hidden_size:
        raise UserError(f"decoder input {decoder.cfg.hidden_size} != LLM hidden size {model.config.hidden_size}")
    rows = tok.rows
    n_rows = model.get_input_embeddings().weight.shape[0]
    if vocab.speakers:  # they shift the text ids: the import's row map no longer describes this model
        raise UserError(f"LLM {llm_path}: rows added after the import (speaker tokens {list(vocab.speakers)}) have no "
                        "place in Soprano's tokenizer; such a model runs in this project's runtime only")
    if len(rows) != n_rows:
        raise UserError(f"LLM {llm_path}: {n_rows} embedding rows but the import mapped {len(rows)}; rows added "
                        "after the import (new speakers or characters) have no place in Soprano's tokenizer")
    n_soprano = max(rows) + 1
    orig = _original_config(tok.path)
    eos = rows[vocab.stop]
    replace_embeddings(model, inverse_rows(model.get_input_embeddings().weight.data, rows, n_soprano),
                       inverse_rows(model.get_output_embeddings().weight.data, rows, n_soprano))
    model.config.eos_token_id = eos
    model.config.pad_token_id = orig.get("pad_token_id")
    model.config.bos_token_id = orig.get("bos_token_id")
    model.config.use_cache = True
    if getattr(model, "generation_config", None) is not None:
        for key, value in (("eos_token_id", eos), ("pad_token_id", orig.get("pad_token_id")),
                           ("bos_token_id", orig.get("bos_token_id"))):
            setattr(model.generation_config, key, value)
    tmp = temp_dir_beside(out)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        for name in TOKENIZER_FILES:
            if name != "config.json" and (tok.path / name).is_file():
                shutil.copyfile(tok.path / name, tmp / name)
        torch.save(sd, str(tmp / "decoder.pth"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return replace_dir(tmp, out, inputs=[llm_path, decoder_path], recognised=EXPORT_NAMES,
                       writer="llmtts export soprano")

