"""Checkpoint directories of a run: atomic writes, completeness check, discovery, pruning, per-rank files.

Used by the training core only (``llmtts.train.checkpointing`` writes and reads what goes inside).
Layout of one checkpoint (``RUN/checkpoints/step_00000100/``)::

    dcp/              models, optimizers, EMA: torch.distributed.checkpoint (strategies none/ddp/fsdp2;
                      re-shardable, so a run can resume at another world size)
    ds_<optimizer>/   DeepSpeed engine checkpoints (strategy deepspeed; same world size to resume)
    trainer.json      step, schedulers, world size, strategy, resolved config
    rank_00000.pt     per-rank data position and RNG states (loaded with weights_only=True)
    COMPLETE          JSON manifest {"files": {file: size}, "sha256": {file: hex digest}}, written last; a
                      directory without it is partial. Every file is checked against both before anything of
                      the checkpoint is read (``check_complete``): DCP's ``.metadata`` and DeepSpeed's files are
                      pickles, so only bytes this project wrote are ever unpickled (docs/security.md).

A checkpoint is written into ``checkpoints/.tmp_step_XXXXXXXX`` and renamed when every rank is done,
so a crash never leaves a directory that looks complete.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from llmtts import io as atomic_io
from llmtts.distributed import process_group as pg
from llmtts.errors import UserError
from llmtts.io import sha256_file, write_text_atomic

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
_STEP_RE = re.compile(r"^step_(\d{8})$")


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """All ``step_XXXXXXXX`` directories under ``root`` (complete or not), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        m = _STEP_RE.match(d.name)
        if m and d.is_dir():
            out.append((int(m.group(1)), d))
    return sorted(out)


def check_complete(ckpt: Path, verify: bool = True) -> str | None:
    """None when ``ckpt`` is complete and intact, else why not: missing marker, missing, truncated or unlisted
    file, or (``verify``) a file whose sha256 differs from the one recorded at save time."""
    ckpt = Path(ckpt)
    marker = ckpt / COMPLETE
    if not marker.is_file():
        return "no COMPLETE marker (partially written)"
    try:
        manifest = json.loads(marker.read_text())
        files, digests = manifest["files"], manifest.get("sha256")
        sizes = {str(rel): int(size) for rel, size in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "unreadable COMPLETE manifest"
    for rel, size in sizes.items():
        f = ckpt / rel
        if not f.is_file():
            return f"missing file {rel}"
        if f.stat().st_size != size:
            return f"file {rel} has {f.stat().st_size} bytes, manifest says {size}"
    if not verify:
        return None
    present = {str(f.relative_to(ckpt)) for f in ckpt.rglob("*") if f.is_file()} - {COMPLETE}
    unlisted = sorted(present - set(sizes))
    if unlisted:
        return f"file {unlisted[0]} is not in its COMPLETE manifest"
    if not isinstance(digests, dict) or set(digests) != set(sizes):
        return "no sha256 checksums in its COMPLETE manifest (written by an older version, or edited)"
    for rel in sorted(sizes):
        try:
            digest = sha256_file(ckpt / rel)
        except OSError as exc:
            return f"file {rel} unreadable ({exc.strerror or exc})"
        if digest != digests[rel]:
            return f"file {rel} does not match its recorded sha256 (corrupted or replaced)"
    return None


def find_latest(root: str | Path) -> Path | None:
    """Newest complete, checksum-verified checkpoint; newer partial or corrupt ones are skipped with a warning."""
    for step, d in reversed(list_checkpoints(root)):
        why = check_complete(d)
        if why is None:
            return d
        if pg.info().is_main:
            log.warning("skipping checkpoint %s: %s; trying the previous one", d, why)
    return None


def resolve_resume(resume: str, root: Path) -> Path | None:
    """``auto`` -> newest complete under ``root`` (or None), ``none`` -> None, else a checkpoint path."""
    if resume == "none":
        return None
    if resume == "auto":
        return find_latest(root)
    p = Path(resume)
    if (p / "checkpoints").is_dir() and not (p / COMPLETE).exists():  # a run directory
        found = find_latest(p / "checkpoints")
        if found is None:
            raise UserError(f"--resume {resume}: no complete checkpoint in {p / 'checkpoints'}")
        return found
    if not p.is_dir():
        raise UserError(f"--resume {resume}: no such checkpoint directory")
    why = check_complete(p)
    if why is not None:
        raise UserError(f"--resume {resume}: checkpoint is not usable: {why}")
    return p


def _manifest(d: Path) -> dict[str, dict[str, int | str]]:
    files = [f for f in sorted(d.rglob("*")) if f.is_file()]
    return {"files": {str(f.relative_to(d)): f.stat().st_size for f in files},
            "sha256": {str(f.relative_to(d)): sha256_file(f) for f in files}}


@contextmanager
def atomic_checkpoint(root: Path, step: int) -> Iterator[Path]:
    """All ranks write into the yielded temporary directory; rank 0 seals and renames it."""
    root = Path(root)
    tmp = root / f".tmp_{step_dir_name(step)}"
    final = root / step_dir_name(step)
    if pg.info().is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    pg.barrier()
    yield tmp
    pg.barrier()  # every rank has finished writing
    if pg.info().is_main:
        write_text_atomic(tmp / COMPLETE, json.dumps({"step": step, **_manifest(tmp)}, indent=0), fsync=True)
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step (e.g. resumed then stopped at once)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    pg.barrier()


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def set_aside_newer(root: Path, step: int) -> list[Path]:
    """Rename checkpoints newer than ``step`` (the one resumed from: newer ones were corrupt, or the user rewound)
    to ``abandoned_step_N`` (rank 0). Left in place they would outrank the new run's checkpoints: pruning would
    delete the new ones, and a later ``--resume auto`` would continue the abandoned timeline."""
    moved = []
    for s, d in list_checkpoints(root):
        if s > step:
            target = d.with_name(f"abandoned_{d.name}")
            if target.exists():
                shutil.rmtree(target)
            os.replace(d, target)
            moved.append(target)
    if moved:
        log.warning("resumed from step %d: set aside %d newer checkpoint(s) as %s; delete them when no longer needed",
                    step, len(moved), ", ".join(m.name for m in moved))
    return moved


def clean_partial(root: Path) -> None:
    """Remove temporary directories left by a crash mid-save (rank 0)."""
    if not Path(root).is_dir():
        return
    for d in Path(root).iterdir():
        if d.name.startswith(".tmp_step_") and d.is_dir():
            log.warning("removing partial checkpoint %s", d)
            shutil.rmtree(d, ignore_errors=True)


def prune(root: Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete checkpoints (rank 0); never delete the only good one."""
    complete = [d for _, d in list_checkpoints(root) if check_complete(d, verify=False) is None]
    for d in complete[:-keep_last]:
        shutil.rmtree(d, ignore_errors=True)


def plain(obj):
    """numpy scalars / arrays -> python numbers / tensors, recursively, so ``weights_only`` can load it."""
    import numpy as np

    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [plain(v) for v in obj]
        return out if isinstance(obj, list) else tuple(out)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    return obj


def save_rank_state(ckpt: Path, rank: int, state: dict) -> None:
    torch.save(plain(state), Path(ckpt) / f"rank_{rank:05d}.pt")


def load_rank_state(ckpt: Path, rank: int) -> dict | None:
    f = Path(ckpt) / f"rank_{rank:05d}.pt"
    if not f.is_file():
        return None
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, truncated zip, ...
        raise UserError(f"{f}: unreadable rank state ({exc.__class__.__name__}: {str(exc)[:200]})") from None


def write_json_atomic(path: Path, obj) -> Path:
    """Run-directory JSON (trainer state, env.json, stopped.json): anything not JSON-native becomes a string."""
    return atomic_io.write_json_atomic(path, obj, indent=1, default=str)
