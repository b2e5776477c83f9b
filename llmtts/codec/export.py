"""Codec export (``RUN/export/``: ``model.safetensors`` + ``config.json``) and ``load_codec``.

``config.json``: ``{"model": <CodecModelConfig as dict>, "sample_rate", "samples_per_token", "tokens_per_second",
"codebook": {"kind", "levels", "num_quantizers", "codebook_size", "num_codebooks", "bits_per_token", "layout"}}``.
``layout`` is ``"[T]"`` for FSQ (one token per frame, what the LLM uses) or ``"[T, Q]"`` for residual FSQ.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from llmtts.codec.config import CodecModelConfig
from llmtts.codec.model import CodecModel
from llmtts.errors import UserError
from llmtts.export_dir import refuse_non_finite
from llmtts.io import write_file_atomic, write_text_atomic


def codec_metadata(model: CodecModel) -> dict:
    q = model.quantizer
    return {
        "model": dataclasses.asdict(model.cfg),
        "sample_rate": model.sample_rate,
        "samples_per_token": model.samples_per_token,
        "tokens_per_second": model.tokens_per_second,
        "codebook": {
            "kind": q.kind, "levels": list(q.levels), "num_quantizers": q.num_codebooks,
            "codebook_size": q.codebook_size, "num_codebooks": q.num_codebooks,
            "bits_per_token": q.bits_per_token, "layout": "[T]" if q.num_codebooks == 1 else "[T, Q]",
        },
    }


def export_codec(model: CodecModel, out_dir: str | Path) -> Path:
    """Write weights then config, each to a temporary name renamed into place (a reader never sees half)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    write_file_atomic(out_dir / "model.safetensors",
                      lambda tmp: save_file(state, str(tmp), metadata={"format": "pt", "kind": "llmtts-codec"}))
    write_text_atomic(out_dir / "config.json", json.dumps(codec_metadata(model), indent=2) + "\n")
    return out_dir


def _resolve(path: str | Path) -> Path:
    from llmtts.export_dir import resolve_export

    return resolve_export(path)


def load_codec(path: str | Path, device: str | torch.device = "cpu") -> CodecModel:
    """A run directory or its ``export/`` -> the codec in eval mode on ``device``. An encoder-only export of
    Soprano's encoder (``llmtts import soprano --encoder``, config ``kind: soprano-encoder``) gives a
    ``SopranoEncoder``: same ``encode`` interface, ``decode`` is a one-line error."""
    export = _resolve(path)
    cfg_path, weights = export / "config.json", export / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise UserError(f"{p}: missing; '{path}' is not a codec export")
    try:
        meta = json.loads(cfg_path.read_text())
        if isinstance(meta, dict) and meta.get("kind") == "soprano-encoder":  # encoder only: `import soprano --encoder`
            from llmtts.interop.soprano.encoder import load_encoder

            return load_encoder(meta, weights, cfg_path).to(device)
        cfg = CodecModelConfig(**meta["model"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{cfg_path}: not a codec config ({exc})") from None
    model = CodecModel(cfg)
    try:
        state = load_file(str(weights))
        refuse_non_finite(state, weights)
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise UserError(f"{weights}: weights do not fit the config ({str(exc).splitlines()[0]})") from None
    if missing or unexpected:
        raise UserError(f"{weights}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval()
