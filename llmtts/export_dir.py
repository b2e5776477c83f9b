"""Export directories: a run directory -> its ``export/`` (every stage's loader resolves paths here). Exports are
written through ``llmtts.io`` (``replace_dir`` for the directory swap, ``write_file_atomic`` for weights).

(The checkpoint directories of a run are the training core's: ``llmtts.train.checkpoint_dir``.)
"""
from __future__ import annotations

import logging
from pathlib import Path

from llmtts.errors import UserError

log = logging.getLogger(__name__)


def resolve_export(path: str | Path, verify: bool = True) -> Path:
    """A run directory or its ``export/`` directory -> the export directory (checked to exist; ``verify``: its
    weight files against the checksums recorded at export, ``io.verify_output_dir``)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such run or export directory")
    if (p / "export").is_dir():
        p = p / "export"
    markers = ("model.safetensors", "config.json", "model.safetensors.index.json")
    if not p.is_dir() or not any((p / m).exists() for m in markers):
        raise UserError(f"{p}: not an export directory (expected export/ with model.safetensors or config.json; "
                        "did training finish?)")
    if verify:
        verify_export(p)
    return p


_WARNED: set[str] = set()


def verify_export(p: Path) -> None:
    """Checksums verified (a mismatch is a one-line error naming the file); an export without any (written before
    2026-12-07 or by hand) loads with a one-time warning."""
    from llmtts.io import verify_output_dir

    if not verify_output_dir(p) and str(p) not in _WARNED:
        _WARNED.add(str(p))
        log.warning("%s: no checksums recorded (an export made before 2026-12-07, or by hand): loaded unverified", p)


def refuse_non_finite(tensors, where) -> None:
    """A one-line error naming the first weight holding NaN or inf (such a model speaks noise or silence)."""
    import torch

    items = tensors.items() if hasattr(tensors, "items") else tensors
    for name, t in items:
        if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(f"{where}: weight {name} holds NaN or inf values; the model is unusable (retrain or "
                            "re-export it)")
