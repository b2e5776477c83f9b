"""Export directories: a run directory -> its ``export/`` (every stage's loader resolves paths here). Exports are
written through ``llmtts.io`` (``replace_dir`` for the directory swap, ``write_file_atomic`` for weights).

(The checkpoint directories of a run are the training core's: ``llmtts.train.checkpoint_dir``.)
"""
from __future__ import annotations

from pathlib import Path

from llmtts.errors import UserError


def resolve_export(path: str | Path) -> Path:
    """A run directory or its ``export/`` directory -> the export directory (checked to exist)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such run or export directory")
    if (p / "export").is_dir():
        p = p / "export"
    markers = ("model.safetensors", "config.json", "model.safetensors.index.json")
    if not p.is_dir() or not any((p / m).exists() for m in markers):
        raise UserError(f"{p}: not an export directory (expected export/ with model.safetensors or config.json; "
                        "did training finish?)")
    return p
