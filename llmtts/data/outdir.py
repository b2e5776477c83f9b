"""Output folders of the data commands (``data shards``, ``data corpus``, ``codec encode``, ``llm dump-hidden``):
which folders they may write into, and which files in them they may delete.

A command writes into ``--out`` only when it is new, empty, or one of ours: it holds our marker
(``.llmtts-output.json``, written before anything else, so an interrupted run is still recognised) or the
file a finished run of that command leaves (``index.json`` / ``corpus.json``). It never deletes a file that is
not listed in that marker or index. ``--out`` must not be the input, a folder above it or one inside it: a run
there would read its own output or overwrite the dataset (``--out`` = the folder holding the manifest
deleted the dataset's own ``train/`` audio).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from llmtts.data.shards import DONE_SUFFIX, INDEX_NAME, confined, read_index
from llmtts.errors import UserError
from llmtts.io import OUTPUT_MARKER, write_json_atomic

MARKER = OUTPUT_MARKER


def check_out_path(out: str | Path, inputs: Iterable[str | Path] = (), flag: str = "--out") -> Path:
    """``out`` as a Path; refuses an existing non-folder and a folder equal to, above or inside an input."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {out}: exists and is not a directory")
    o = out.resolve()
    for inp in inputs:
        i = Path(inp).resolve()
        if o == i or o in i.parents:
            raise UserError(f"{flag} {out}: is the input {inp} or a folder above it; choose a separate output folder")
        if i in o.parents:
            raise UserError(f"{flag} {out}: is inside the input {inp}; choose a folder outside it")
    return out


def read_marker(out: Path) -> dict | None:
    """Our marker's content, or None when absent or unreadable (then the folder is not known to be ours)."""
    path = out / MARKER
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict):
        return None
    files = marker.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    for f in files:
        confined(f, path)
    return marker


def _entries(out: Path) -> list[str]:
    """Names in ``out``, except the temporary files of a marker another rank is writing right now."""
    if not out.is_dir():
        return []
    return [p.name for p in out.iterdir() if not (p.name.startswith(f".{MARKER}.") and p.name.endswith(".tmp"))]


def ensure_ours(out: Path, recognised: bool, what: str) -> dict | None:
    """Refuse a non-empty ``out`` that has no marker and that the caller did not ``recognised`` (its own
    complete output); returns the marker (None if absent)."""
    marker = read_marker(out)
    entries = _entries(out)
    if marker is None and not recognised and entries:
        raise UserError(f"--out {out}: not empty and not {what} written by llmtts (found {sorted(entries)[0]!r}, "
                        f"no {MARKER}); choose a new or empty folder")
    return marker


def claim(out: Path, owner: dict) -> None:
    """Write the marker before any other file, so an interrupted run's folder is still recognised as ours."""
    write_json_atomic(out / MARKER, owner, sort_keys=True)


def shard_index_or_none(out: Path) -> dict | None:
    """A shard folder's index, or None when it has none or an unusable one (then it is not trusted to list
    what may be deleted)."""
    if not (out / INDEX_NAME).is_file():
        return None
    try:
        return read_index(out)
    except UserError:
        return None


def owned_shards(index: dict | None, marker: dict | None) -> list[str]:
    """Relative shard paths this project wrote into ``out``: listed in its index or in our marker."""
    rels = {s["path"] for s in (index or {}).get("shards", [])}
    rels |= set((marker or {}).get("files", []))
    return sorted(rels)


def remove_shards(out: Path, rels: Iterable[str], extra_files: Iterable[str] = ()) -> None:
    """Delete the listed shards (with their temporary and ``.done.json`` siblings), ``index.json`` and
    ``extra_files``; then folders left empty. Nothing else in ``out`` is touched."""
    dirs = set()
    for rel in rels:
        for suffix in ("", ".tmp", DONE_SUFFIX):
            (out / (rel + suffix)).unlink(missing_ok=True)
        dirs.add((out / rel).parent)
    for name in [INDEX_NAME, *extra_files]:
        (out / name).unlink(missing_ok=True)
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        if d != out and d.is_dir() and not any(d.iterdir()):
            d.rmdir()
