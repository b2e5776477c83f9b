"""Export directories: a run directory -> its ``export/``, and the atomic directory swap exports are written with.

(The checkpoint directories of a run are the training core's: ``llmtts.train.checkpoint_dir``.)
"""
from __future__ import annotations

import os
import shutil
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


def replace_dir(tmp: Path, out_dir: Path) -> Path:
    """Swap a fully written ``tmp`` directory into ``out_dir`` (exports): a reader sees the old or the new
    directory, never a half-written one; the previous one is kept as ``.old`` until the swap is done."""
    tmp, out_dir = Path(tmp), Path(out_dir)
    old = out_dir.with_name(out_dir.name + ".old")
    if out_dir.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old.exists():
        shutil.rmtree(old)
    return out_dir
