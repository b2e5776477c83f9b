"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one.

One writer for every output file (JSON, YAML, CSV, wav): the bytes go to a temporary file beside the target,
then ``os.replace`` puts it in place. Two exceptions, because a rename would do the wrong thing there:

* the target exists and is not a regular file (``/dev/null``, a FIFO, a device): renaming over it would
  replace the node itself (as root, ``--out /dev/null`` left a regular file in /dev), so the bytes are
  written through it instead;
* the target is a symbolic link: the link is followed and its target gets the new content (what ``> link``
  does in a shell); renaming over the link would silently cut it from the file it points to.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from llmtts.errors import UserError


def temp_path_for(path: Path) -> Path:
    """A temporary name beside ``path``, unique per process *and* call: two writers of the same file (two
    processes, or two threads of one) never share a temporary file. Hidden, so globs for outputs skip it."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp")


def _write_through(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def write_bytes_atomic(path: str | Path, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` to a unique temporary file beside ``path``, then rename it over ``path`` (see the module
    docstring for non-regular targets and symlinks). ``fsync`` for markers that must survive a power loss."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.is_dir():
        raise UserError(f"{path}: is a directory, expected a file name")
    if target.exists() and not target.is_file():
        _write_through(target, data)
        return path
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target)
    # O_EXCL: the temporary file is ours alone; mode 0o666 lets the umask decide, as for any new file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_file_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """For writers that take a file name (safetensors, matplotlib): ``write(tmp)`` fills a unique temporary
    file beside ``path``, which is then renamed over it; on any error the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# --- the output policy: which folders a command may write, replace or empty --------------------------------------
# Every command that writes a folder goes through ``check_output_dir`` (directly, or through ``temp_dir_beside`` +
# ``replace_dir``): it writes only into a folder that is new, empty or provably this project's own output, never
# into an input or a folder above or inside one, and never through a fixed temporary name a user's file may have.

OUTPUT_MARKER = ".llmtts-output.json"  # written into every output folder before it is put in place


def _is_marker_temp(name: str) -> bool:
    """The temporary file of a marker another process (a second rank) is writing right now."""
    return name.startswith(f".{OUTPUT_MARKER}.") and name.endswith(".tmp")


def _read_only(path: Path) -> bool:
    """No write bit for anyone: the user marked it read-only. Root could still write there (``os.access`` says
    yes), so the bits are read, not the permission: the policy respects the user's mark, not just the kernel."""
    try:
        return not path.stat().st_mode & 0o222
    except OSError:
        return False


def _local(paths) -> list[tuple[object, Path]]:
    """``(as given, real path)`` of the local paths among ``paths`` (None, "" and URLs are not on this disk)."""
    return [(p, Path(os.path.realpath(p))) for p in paths if p is not None and str(p) and "://" not in str(p)]


def check_output_dir(out: str | Path, inputs=(), flag: str = "--out", recognised=(), legacy=(), hosts=()) -> Path:
    """The folder a command may write (a symlink to a folder: the folder it points to, the link is kept); one-line
    ``UserError`` otherwise. May: absent, empty, holding ``OUTPUT_MARKER`` (ours), holding only names in
    ``recognised`` (the files this kind of output consists of: an export written before the marker existed), or
    holding one of the ``legacy`` names (the file a finished run of this command left before the marker existed).
    Never: an existing non-folder, a read-only folder, an input, a folder above an input (its replacement would
    delete the input) or inside one. ``hosts``: inputs that may hold outputs inside them (a model's run folder
    holds its evaluations), still never equal to or below the output."""
    out = Path(out)
    real = Path(os.path.realpath(out))
    if real.exists() and not real.is_dir():
        raise UserError(f"{flag} {out}: exists and is not a directory")
    for (inp, i), may_hold in [(x, False) for x in _local(inputs)] + [(x, True) for x in _local(hosts)]:
        if real == i or real in i.parents:
            raise UserError(f"{flag} {out}: is the input {inp} or a folder above it; choose a separate output folder")
        if i in real.parents and not may_hold:
            raise UserError(f"{flag} {out}: is inside the input {inp}; choose a folder outside it")
    if real.is_dir() and _read_only(real):
        raise UserError(f"{flag} {out}: the folder is read-only; make it writable or choose another folder")
    if real.is_dir() and not (real / OUTPUT_MARKER).is_file():
        names = {p.name for p in real.iterdir() if not _is_marker_temp(p.name)}
        foreign = sorted(names - set(recognised))
        if foreign and not names & set(legacy):
            raise UserError(f"{flag} {out}: not empty and not written by llmtts (found {foreign[0]!r}, no "
                            f"{OUTPUT_MARKER}); choose a new or empty folder")
    return real


def prepare_output_dir(out: str | Path, *, writer: str, inputs=(), hosts=(), flag: str = "--out", recognised=(),
                       legacy=()) -> bool:
    """The output policy for a command about to write the folder ``out``: ``check_output_dir``, then the folder is
    created, proven writable and marked ours (``OUTPUT_MARKER``, before anything else is written, so a run killed
    at its first step is still recognised when it resumes). Returns True when this call created the folder (the
    caller may remove it again if the command wrote nothing). A URL (``s3://``) is left to its writer."""
    if "://" in str(out):
        return False
    real = check_output_dir(out, inputs, flag, recognised, legacy, hosts)
    created = not real.exists()
    ensure_writable_dir(real, flag)
    if not (real / OUTPUT_MARKER).is_file():
        claim_output_dir(real, writer)
    return created


def drop_if_unused(out: str | Path) -> None:
    """Remove a folder ``prepare_output_dir`` created when the command left nothing in it but the marker (a bad
    input found after the check: no empty output folder is left behind)."""
    real = Path(os.path.realpath(out))
    try:
        if {p.name for p in real.iterdir()} == {OUTPUT_MARKER}:
            (real / OUTPUT_MARKER).unlink()
            real.rmdir()
    except OSError:
        pass


def check_output_root(out: str | Path, inputs=(), flag: str = "--out") -> Path:
    """A folder a command only adds new, uniquely named entries to (never replaces or deletes what is there):
    not a file, not read-only, not an input or a folder above one."""
    out = Path(out)
    real = Path(os.path.realpath(out))
    if real.exists() and not real.is_dir():
        raise UserError(f"{flag} {out}: exists and is not a directory")
    for inp, i in _local(inputs):
        if real == i or real in i.parents:
            raise UserError(f"{flag} {out}: is the input {inp} or a folder above it; choose another folder")
    if real.is_dir() and _read_only(real):
        raise UserError(f"{flag} {out}: the folder is read-only; make it writable or choose another folder")
    return out


def check_output_file(out: str | Path, inputs=(), flag: str = "--out") -> Path:
    """The output policy for a file: never a folder, never an input (or a link to one), never in a read-only folder
    or over a read-only file. A device, FIFO or symlink is written through, never replaced (``write_bytes_atomic``).
    An existing regular file the user named is replaced: naming one file is the request (folders differ: what a
    foreign folder holds is not named, so it is never touched)."""
    if "://" in str(out):
        return Path(out)
    out = Path(out)
    real = Path(os.path.realpath(out))
    if real.is_dir():
        raise UserError(f"{flag} {out}: is a directory, expected a file name")
    for inp, i in _local(inputs):
        if real == i:
            raise UserError(f"{flag} {out}: is the input {inp}; choose another output file")
    parent = next((p for p in real.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UserError(f"{flag} {out}: cannot write there ({parent} is a file, not a folder)")
    if real.is_file() and _read_only(real):
        raise UserError(f"{flag} {out}: the file is read-only; make it writable or choose another name")
    if parent is not None and _read_only(parent) and not (real.exists() and not real.is_file()):
        raise UserError(f"{flag} {out}: its folder {parent} is read-only; choose another place")
    return out


# Files whose bytes become a model's numbers: a flipped byte there changes the audio silently, so exports record
# their sha256 in the marker and loaders verify it (JSON files are checked by their parsers, and users edit some).
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def claim_output_dir(directory: str | Path, writer: str, checksums: bool = False) -> None:
    """Mark ``directory`` as this project's output (``check_output_dir`` then lets a later run replace it);
    ``checksums``: also record the sha256 of every weight file in it (``verify_output_dir``)."""
    directory = Path(directory)
    marker: dict = {"written_by": writer}
    if checksums:
        marker["sha256"] = {str(f.relative_to(directory)): sha256_file(f) for f in sorted(directory.rglob("*"))
                            if f.is_file() and f.suffix in WEIGHT_SUFFIXES}
    write_json_atomic(directory / OUTPUT_MARKER, marker)


_VERIFIED: set = set()  # (folder, files' sizes and mtimes) already verified in this process


def verify_output_dir(directory: str | Path) -> bool:
    """Check the weight files of an export against the sha256 its marker recorded; one-line ``UserError`` naming
    the file on a mismatch or a missing file. False when the folder records none (an export written before
    2026-12-07, or by hand): loaded unverified."""
    directory = Path(directory)
    try:
        recorded = json.loads((directory / OUTPUT_MARKER).read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        return False
    if not isinstance(recorded, dict):
        return False
    stats = tuple((rel, *_stat(directory / rel)) for rel in sorted(recorded))
    key = (os.path.realpath(directory), stats)
    if key in _VERIFIED:  # one load reads the same export several times (config, inference defaults, weights)
        return True
    for rel, digest in recorded.items():
        f = directory / rel
        if not f.is_file():
            raise UserError(f"{f}: listed in the export's checksums but missing; re-export the model")
        if sha256_file(f) != digest:
            raise UserError(f"{f}: sha256 differs from the one recorded when it was exported (corrupted or "
                            "modified); re-export or re-download the model")
    _VERIFIED.add(key)
    return True


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def temp_dir_beside(out: str | Path) -> Path:
    """A new, uniquely named hidden folder next to ``out`` (same file system: the swap is a rename); never a fixed
    ``out.tmp`` that could be a user's folder."""
    real = Path(os.path.realpath(out))
    real.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=real.parent, prefix=f".{real.name}.tmp-"))


def replace_dir(tmp: str | Path, out_dir: str | Path, *, inputs=(), flag: str = "--out", recognised=(),
                writer: str = "llmtts") -> Path:
    """Swap a fully written ``tmp`` (from ``temp_dir_beside``) into ``out_dir`` after ``check_output_dir``: a reader
    sees the old or the new folder, never a half-written one. ``tmp`` gets the marker first; the previous folder is
    moved to a unique hidden name and removed after the swap. On a refusal ``tmp`` is removed and ``out_dir`` left
    as it was."""
    tmp = Path(tmp)
    try:
        real = check_output_dir(out_dir, inputs, flag, recognised)
    except UserError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    claim_output_dir(tmp, writer, checksums=True)
    old = None
    if real.exists():
        old = Path(tempfile.mkdtemp(dir=real.parent, prefix=f".{real.name}.old-"))
        os.replace(real, old)  # over an empty folder: allowed
    os.replace(tmp, real)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return Path(out_dir)


def write_text_atomic(path: str | Path, text: str, fsync: bool = False) -> Path:
    """``text`` as UTF-8, written atomically (``write_bytes_atomic``)."""
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(path: str | Path, obj: Any, fsync: bool = False, **dumps_kwargs: Any) -> Path:
    """``json.dumps(obj, indent=2, **dumps_kwargs)`` + newline, written atomically."""
    dumps_kwargs.setdefault("indent", 2)
    return write_text_atomic(path, json.dumps(obj, **dumps_kwargs) + "\n", fsync=fsync)


def ensure_writable_dir(directory: str | Path, flag: str) -> Path:
    """Create ``directory`` (and parents) and prove a file can be written there, before any long work: an output
    path that turns out unusable after an hour of synthesis or training is the failure this prevents."""
    d = Path(directory)
    existing = next((p for p in (d, *d.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"{flag} {directory}: cannot write there ({existing} is a file, not a folder)")
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = temp_path_for(d / "write-probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{flag} {directory}: cannot write there ({exc.strerror or exc})") from None
    return d
