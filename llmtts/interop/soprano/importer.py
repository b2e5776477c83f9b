"""``llmtts import soprano``: a local Soprano model directory -> this project's LLM and decoder exports.

Input (what Hugging Face's ``ekwek/Soprano-1.1-80M`` holds): ``config.json`` + ``model.safetensors`` (Qwen3) +
``tokenizer.json`` (+ ``tokenizer_config.json``...) + ``decoder.pth``. Output::

    OUT/llm/       HF directory in this project's vocabulary layout (rows permuted, ``layout.py``) + vocab.json +
                   frontend.json (Soprano's tokenizer, prompt and normaliser) + inference.json (Soprano's
                   decoding: greedy, repetition penalty 1.2 over the whole sequence, any output id, 512 tokens)
    OUT/decoder/   decoder export with ``edges: soprano`` (``decoder.py``)
    OUT/codec/     with ``--encoder encoder.pth``: an encoder-only codec export (``encoder.py``) for ``codec encode``
    OUT/soprano_import.json   what was imported, for the record
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from llmtts.errors import UserError
from llmtts.llm.model import replace_embeddings
from llmtts.interop.soprano.decoder import import_decoder, read_pth
from llmtts.interop.soprano.encoder import import_encoder, save_encoder
from llmtts.interop.soprano.layout import analyse
from llmtts.interop.soprano.tokenizer import SopranoTokenizer, load_auto_tokenizer

# Soprano's decoding (soprano/tts.py + backends/transformers.py): temperature 0 (it passes 0.001 to a sampler),
# top_p 0.95, repetition penalty 1.2 over prompt + output with no window, every output id, 512 new tokens.
SOPRANO_INFERENCE = {"temperature": 0.0, "top_p": 0.95, "repetition_penalty": 1.2, "repetition_window": 0,
                     "penalize_prompt": 1, "full_vocab": 1, "max_tokens": 512, "tokens_per_text_id": 512.0}
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "decoder.pth")


def permute_rows(weight: torch.Tensor, rows: list[int], n_out: int) -> torch.Tensor:
    """``out[p] = weight[rows[p]]`` (zeros where ``rows[p] < 0``)."""
    out = weight.new_zeros(n_out, weight.shape[1])
    idx = torch.tensor([p for p, s in enumerate(rows) if s >= 0])
    src = torch.tensor([s for s in rows if s >= 0])
    out[idx] = weight[src]
    return out


def set_rows(model, rows: list[int], n_rows: int, eos: int, pad: int | None) -> None:
    """Replace the model's input/output embeddings by their rows permuted through ``rows``."""
    replace_embeddings(model, permute_rows(model.get_input_embeddings().weight.data, rows, n_rows),
                       permute_rows(model.get_output_embeddings().weight.data, rows, n_rows))
    model.config.eos_token_id = eos
    model.config.pad_token_id = pad
    model.config.bos_token_id = None
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = eos
        model.generation_config.pad_token_id = pad
        model.generation_config.bos_token_id = None


def check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: no such Soprano model directory")
    for name in REQUIRED:
        if not (model_dir / name).is_file():
            raise UserError(f"{model_dir}: missing {name} (a Soprano model directory holds {', '.join(REQUIRED)})")


# What an import's OUT holds (an earlier import, recognised without the output marker), and its codec folder.
IMPORT_NAMES = ("llm", "decoder", "codec", "soprano_import.json")
CODEC_NAMES = ("config.json", "model.safetensors")


def import_soprano(model_dir: str | Path, out: str | Path, audio_first_id: int | None = None,
                   n_audio: int | None = None, encoder: str | Path | None = None) -> dict:
    """Write ``out/llm``, ``out/decoder`` and (with ``encoder``, Soprano-Encoder's ``encoder.pth``) the
    encoder-only codec ``out/codec``; returns the summary also written to ``out/soprano_import.json``."""
    from llmtts.decoder.export import EXPORT_NAMES as DECODER_EXPORT_NAMES
    from llmtts.decoder.export import save_decoder
    from llmtts.io import check_output_dir, claim_output_dir, write_json_atomic
    from llmtts.llm.export import EXPORT_NAMES as LLM_EXPORT_NAMES
    from llmtts.llm.export import save_export
    from llmtts.llm.export import load_model
    from llmtts.llm.tokenizer import Frontend

    model_dir, out = Path(model_dir), Path(out)
    check_model_dir(model_dir)
    # The output policy, before minutes of work: OUT new, empty, an earlier import, or ours; never an input.
    inputs = [model_dir, encoder]
    check_output_dir(out, inputs, recognised=IMPORT_NAMES)
    for sub, names in (("llm", LLM_EXPORT_NAMES), ("decoder", DECODER_EXPORT_NAMES), ("codec", CODEC_NAMES)):
        check_output_dir(out / sub, inputs, recognised=names)
    # The decoder first: it is cheap to read, and a bad decoder.pth should fail before minutes of LLM work.
    decoder = import_decoder(read_pth(model_dir / "decoder.pth"), str(model_dir / "decoder.pth"))
    codec = import_encoder(read_pth(encoder), str(encoder)) if encoder else None
    tok = load_auto_tokenizer(model_dir)
    model = load_model(model_dir)
    if model.config.model_type != "qwen3":
        raise UserError(f"{model_dir / 'config.json'}: model_type {model.config.model_type!r}, Soprano's LLM is qwen3")
    rows_in = model.get_input_embeddings().weight.shape[0]
    if rows_in != model.config.vocab_size:
        raise UserError(f"{model_dir}: {rows_in} embedding rows but config.json vocab_size {model.config.vocab_size}")
    layout = analyse(tok, model.config, str(model_dir), audio_first_id=audio_first_id, n_audio=n_audio)
    vocab = layout.project_vocab()
    if codec is not None and codec.quantizer.codebook_size != vocab.n_audio:
        raise UserError(f"{encoder}: the encoder makes {codec.quantizer.codebook_size} codes but the LLM has "
                        f"{vocab.n_audio} audio tokens")
    rows = layout.row_map(vocab)
    if decoder.cfg.hidden_size != model.config.hidden_size:
        raise UserError(f"{model_dir / 'decoder.pth'}: decoder input is {decoder.cfg.hidden_size} wide but the LLM's "
                        f"hidden size is {model.config.hidden_size}")
    set_rows(model, rows, vocab.size, eos=vocab.stop, pad=vocab.pad)
    frontend = Frontend(tokenizer=SopranoTokenizer(model_dir, layout.text_ids, rows), normalizer="soprano")
    frontend.encode("hello world.")  # the prompt template survives Soprano's tokenizer (else a one-line error)
    out.mkdir(parents=True, exist_ok=True)
    claim_output_dir(out, "llmtts import soprano")
    save_export(model, vocab, frontend, out / "llm", inference=SOPRANO_INFERENCE, inputs=inputs)
    llm_info = {"n_audio": vocab.n_audio, "vocab_size": vocab.size, "hidden_size": model.config.hidden_size}
    save_decoder(decoder, out / "decoder", llm_info=llm_info, inputs=inputs)
    if codec is not None:
        (out / "codec").mkdir(exist_ok=True)
        claim_output_dir(out / "codec", "llmtts import soprano")
        save_encoder(codec, out / "codec")
    summary = {"source": str(model_dir.resolve()), "llm": str(out / "llm"), "decoder": str(out / "decoder"),
               "n_audio": vocab.n_audio, "n_text": vocab.n_text, "soprano_rows": layout.rows, "rows": vocab.size,
               "soprano_ids": {"stop": layout.stop, "text": layout.text, "start": layout.start, "pad": layout.pad,
                               "audio_first": layout.audio[0], "audio_last": layout.audio[-1]},
               "decoder_config": json.loads(json.dumps(decoder.cfg.__dict__)),
               "llm_parameters": sum(p.numel() for p in model.parameters()),
               "decoder_parameters": sum(p.numel() for p in decoder.parameters())}
    if codec is not None:
        summary.update(codec=str(out / "codec"), encoder_source=str(Path(encoder).resolve()),
                       codec_config=json.loads(json.dumps(codec.cfg.__dict__)),
                       codec_parameters=sum(p.numel() for p in codec.parameters()))
    write_json_atomic(out / "soprano_import.json", summary)
    return summary
