"""The decoder's inference checkpoint: ``export/model.safetensors`` + ``export/config.json``.

config.json: ``{"model": <DecoderModelConfig>, "sample_rate", "samples_per_token", "hidden_size",
"receptive_field_tokens", "llm": {...}}`` — ``llm`` (optional) describes the LLM whose states it was
trained on (hidden size, vocabulary), so inference can refuse a mismatched pair.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from llmtts.config import ConfigError, from_dict
from llmtts.decoder.config import DecoderModelConfig
from llmtts.decoder.model import HiddenDecoder, receptive_field_tokens
from llmtts.export_dir import refuse_non_finite, verify_export
from llmtts.io import check_output_dir, replace_dir, temp_dir_beside
from llmtts.errors import UserError


def write_decoder_files(model: HiddenDecoder, out_dir: str | Path, llm_info: dict | None = None) -> None:
    """model.safetensors + config.json into an existing (temporary) directory."""
    out_dir = Path(out_dir)
    cfg = model.cfg
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "model.safetensors"))
    meta = {"model": dataclasses.asdict(cfg), "sample_rate": cfg.sample_rate,
            "samples_per_token": cfg.samples_per_token, "hidden_size": cfg.hidden_size,
            "receptive_field_tokens": receptive_field_tokens(cfg), "llm": llm_info or {}}
    (out_dir / "config.json").write_text(json.dumps(meta, indent=1))


EXPORT_NAMES = ("config.json", "model.safetensors")  # a decoder export folder written before the output marker


def save_decoder(model: HiddenDecoder, out_dir: str | Path, llm_info: dict | None = None, inputs=()) -> Path:
    """Write the export into a unique temporary folder, then swap it in through the output policy
    (``io.replace_dir``: never over a foreign folder or an input)."""
    check_output_dir(out_dir, inputs, recognised=EXPORT_NAMES)
    tmp = temp_dir_beside(out_dir)
    try:
        write_decoder_files(model, tmp, llm_info)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return replace_dir(tmp, out_dir, inputs=inputs, recognised=EXPORT_NAMES, writer="llmtts decoder export")


def resolve_decoder_dir(path: str | Path) -> Path:
    """A decoder run directory or its ``export/`` -> the export directory, with a one-line error."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"decoder path {p}: no such run or export directory")
    if (p / "export").is_dir():
        p = p / "export"
    if not (p / "model.safetensors").is_file() or not (p / "config.json").is_file():
        raise UserError(f"decoder path {p}: not a decoder export (expected model.safetensors + config.json; "
                        "did `llmtts decoder train` finish?)")
    verify_export(p)
    return p


def read_decoder_config(path: str | Path) -> tuple[DecoderModelConfig, dict]:
    d = resolve_decoder_dir(path)
    try:
        meta = json.loads((d / "config.json").read_text())
        if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
            raise ValueError("no 'model' object")
    except (json.JSONDecodeError, ValueError) as exc:
        raise UserError(f"{d / 'config.json'}: not a decoder config ({exc})") from None
    try:
        cfg = from_dict(DecoderModelConfig, meta["model"], str(d / "config.json"), prefix="model.")
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    return cfg, meta


def load_decoder(path: str | Path, device: str | torch.device = "cpu") -> tuple[HiddenDecoder, dict]:
    """``(model, meta)`` in eval mode; weights through safetensors only."""
    d = resolve_decoder_dir(path)
    cfg, meta = read_decoder_config(d)
    model = HiddenDecoder(cfg)
    try:
        state = load_file(str(d / "model.safetensors"))
    except Exception as exc:  # safetensors raises SafetensorError / OSError
        raise UserError(f"{d / 'model.safetensors'}: unreadable ({exc})") from None
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong:  # load_state_dict would raise a many-line RuntimeError
        k = wrong[0]
        raise UserError(f"{d / 'model.safetensors'}: weights do not match config.json ({len(wrong)} shape(s) differ, "
                        f"e.g. {k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} from the config)")
    refuse_non_finite(state, d / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{d / 'model.safetensors'}: weights do not match config.json "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval(), meta
