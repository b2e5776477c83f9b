"""Writing WebDataset shards atomically, and the ``index.json`` that describes a shard directory.

A shard is a plain tar file whose members are ``KEY.<ext>`` (``KEY.flac``, ``KEY.json``,
``KEY.codes.npy``, ``KEY.hidden.npy``); members of one sample are adjacent. Writing goes to
``shard-000000.tar.tmp`` and is renamed on ``close()``, so a reader (or a resumed job) never sees a
half-written shard. Tar headers carry no time/owner, so the same samples give byte-identical shards.

Schemas of every kind of shard (audio / tokens / hidden) are in ``shards/README.md``.
"""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

import numpy as np

from llmtts.errors import UserError
from llmtts.io import write_json_atomic

INDEX_NAME = "index.json"
DONE_SUFFIX = ".done.json"  # beside each output shard of a rank-parallel map (parallel_map), written last
INDEX_VERSION = 1
KINDS = ("audio", "tokens", "hidden")
# A key becomes a file name prefix; webdataset splits "KEY.ext" at the first dot of the base name.
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


def is_usable_key(key: object) -> bool:
    """Whether ``key`` can name a sample in a shard this project writes (letters, digits, '_' and '-')."""
    return isinstance(key, str) and bool(_KEY_RE.match(key))


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True).encode("utf-8")


def encode_member(ext: str, value: Any) -> bytes:
    """bytes stay as they are; dict -> JSON (``json``); ndarray -> ``.npy`` bytes (``*.npy``)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if ext == "json" or ext.endswith(".json"):
        return json_bytes(value)
    if ext.endswith("npy"):
        return npy_bytes(np.asarray(value))
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"don't know how to encode member '{ext}' of type {type(value).__name__}")


@dataclass
class ShardSummary:
    """What one written shard holds; also the content of a ``.done.json`` file (see parallel_map)."""

    path: str  # relative to the shard directory, e.g. "train/shard-000000.tar"
    split: str
    num_samples: int = 0
    seconds: float = 0.0
    speakers: dict[str, dict[str, float]] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"path": self.path, "split": self.split, "num_samples": self.num_samples,
                "seconds": round(self.seconds, 3),
                "speakers": {k: {"num_samples": v["num_samples"], "seconds": round(v["seconds"], 3)}
                             for k, v in sorted(self.speakers.items())}, "rejected": dict(self.rejected)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "ShardSummary":
        return cls(path=d["path"], split=d["split"], num_samples=int(d["num_samples"]), seconds=float(d["seconds"]),
                   speakers={k: dict(v) for k, v in d.get("speakers", {}).items()},
                   rejected={k: int(v) for k, v in d.get("rejected", {}).items()})


class ShardWriter:
    """Write one tar shard atomically: members go to ``PATH.tmp``; ``close()`` renames it to ``PATH``.

    ``write(key, {"flac": bytes, "json": {...}, "codes.npy": ndarray})``. Sample counts, seconds
    (``json["duration_s"]``) and per-speaker totals (``json["speaker"]``) are tracked in ``summary``.
    Used as a context manager, an exception discards the temporary file instead of renaming it.
    """

    def __init__(self, path: str | Path, rel_path: str | None = None, split: str = ""):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self._file = open(self.tmp_path, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
        self.summary = ShardSummary(path=rel_path or self.path.name, split=split)
        self._keys: set[str] = set()
        self.closed = False

    def write(self, key: str, members: Mapping[str, Any]) -> None:
        if not _KEY_RE.match(key):
            raise UserError(f"sample key '{key}' is not usable in a shard (letters, digits, '_' and '-' only)")
        if key in self._keys:
            raise UserError(f"duplicate sample key '{key}' in shard {self.path}")
        self._keys.add(key)
        meta = None
        for ext in sorted(members):
            value = members[ext]
            if ext == "json" and isinstance(value, Mapping):
                meta = value
            data = encode_member(ext, value)
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = \
                len(data), 0, 0o644, 0, 0, "", ""
            self._tar.addfile(info, io.BytesIO(data))
        if meta is None and isinstance(members.get("json"), (bytes, bytearray)):
            meta = json.loads(members["json"])
        self._count(meta or {})

    def _count(self, meta: Mapping) -> None:
        s = self.summary
        s.num_samples += 1
        secs = float(meta.get("duration_s", 0.0) or 0.0)
        s.seconds += secs
        spk = s.speakers.setdefault(str(meta.get("speaker", "")), {"num_samples": 0, "seconds": 0.0})
        spk["num_samples"] += 1
        spk["seconds"] += secs

    def reject(self, reason: str, n: int = 1) -> None:
        """Count a sample that was dropped while producing this shard."""
        self.summary.rejected[reason] = self.summary.rejected.get(reason, 0) + n

    def close(self) -> ShardSummary:
        if not self.closed:
            self._tar.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.tmp_path, self.path)
            self.closed = True
        return self.summary

    def abort(self) -> None:
        if not self.closed:
            self._tar.close()
            self._file.close()
            self.tmp_path.unlink(missing_ok=True)
            self.closed = True

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class ShardSetWriter:
    """Write ``OUT/SPLIT/shard-NNNNNN.tar``, starting a new shard every ``samples_per_shard`` samples."""

    def __init__(self, out_dir: str | Path, split: str, samples_per_shard: int, start_index: int = 0):
        if samples_per_shard < 1:
            raise UserError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
        self.out_dir, self.split, self.samples_per_shard = Path(out_dir), split, samples_per_shard
        self._next = start_index
        self._writer: ShardWriter | None = None
        self.summaries: list[ShardSummary] = []

    def write(self, key: str, members: Mapping[str, Any]) -> None:
        if self._writer is None:
            rel = f"{self.split}/{shard_name(self._next)}"
            self._writer = ShardWriter(self.out_dir / rel, rel_path=rel, split=self.split)
            self._next += 1
        self._writer.write(key, members)
        if self._writer.summary.num_samples >= self.samples_per_shard:
            self.summaries.append(self._writer.close())
            self._writer = None

    def close(self) -> list[ShardSummary]:
        if self._writer is not None:
            self.summaries.append(self._writer.close())
            self._writer = None
        return self.summaries

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


# --- index.json -------------------------------------------------------------------------------
def build_index(kind: str, shards: list[ShardSummary], rejected: Mapping[str, int] | None = None,
                **extra: Any) -> dict:
    """Aggregate shard summaries into the ``index.json`` document (see shards/README.md)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    shards = sorted(shards, key=lambda s: s.path)
    splits: dict[str, dict] = {}
    speakers: dict[str, dict] = {}
    all_rejected: Counter = Counter({k: int(v) for k, v in (rejected or {}).items()})
    for s in shards:
        sp = splits.setdefault(s.split, {"num_shards": 0, "num_samples": 0, "seconds": 0.0})
        sp["num_shards"] += 1
        sp["num_samples"] += s.num_samples
        sp["seconds"] += s.seconds
        for name, t in s.speakers.items():
            acc = speakers.setdefault(name, {"num_samples": 0, "seconds": 0.0})
            acc["num_samples"] += int(t["num_samples"])
            acc["seconds"] += float(t["seconds"])
        all_rejected.update(s.rejected)
    for d in list(splits.values()) + list(speakers.values()):
        d["seconds"] = round(d["seconds"], 3)
    index = {
        "version": INDEX_VERSION,
        "kind": kind,
        "shards": [{"path": s.path, "split": s.split, "num_samples": s.num_samples, "seconds": round(s.seconds, 3)}
                   for s in shards],
        "splits": dict(sorted(splits.items())),
        "totals": {"num_shards": len(shards), "num_samples": sum(s.num_samples for s in shards),
                   "seconds": round(sum(s.seconds for s in shards), 3)},
        "speakers": dict(sorted(speakers.items())),
        "rejected": dict(sorted(all_rejected.items())),
        "num_rejected": sum(all_rejected.values()),
    }
    index.update(extra)
    return index


def write_index(shard_dir: str | Path, index: Mapping) -> Path:
    path = Path(shard_dir) / INDEX_NAME
    write_json_atomic(path, dict(index), ensure_ascii=False)
    return path


def read_index(shard_dir: str | Path) -> dict:
    """``shard_dir/index.json``, validated; ``shard_dir`` may be an http(s):// or s3:// URL (data/remote.py)."""
    from llmtts.data import remote

    if remote.is_url(shard_dir):
        path: str | Path = remote.join(str(shard_dir), INDEX_NAME)
        text = remote.read_bytes(str(path)).decode("utf-8", errors="replace")
    else:
        path = Path(shard_dir) / INDEX_NAME
        if not path.is_file():
            raise UserError(f"{path}: no index.json; is '{shard_dir}' a shard directory "
                            "(made by `llmtts data shards`, `llmtts codec encode` or `llmtts llm dump-hidden`)?")
        text = path.read_text()
    try:
        index = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(index, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(index).__name__}")
    if index.get("kind") not in KINDS:
        raise UserError(f"{path}: 'kind' must be one of {KINDS}, got {index.get('kind')!r}")
    shards = index.get("shards")
    if not isinstance(shards, list) or not all(
            isinstance(s, dict) and isinstance(s.get("path"), str) and isinstance(s.get("split"), str) for s in shards):
        raise UserError(f"{path}: 'shards' must be a list of {{\"path\": ..., \"split\": ...}} entries")
    for s in shards:
        confined(s["path"], path)
    return index


def confined(rel: str, source: str | Path) -> str:
    """``rel`` if it names a file inside the shard folder; readers and writers join it to their folder, so an
    absolute path or a ``..`` (from an edited or hostile ``index.json``) would make them leave it."""
    parts = PurePosixPath(rel).parts
    if not rel or "\x00" in rel or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise UserError(f"{source}: shard path {rel!r} is absolute or leaves the shard folder")
    return rel


def list_shards(shard_dir: str | Path, split: str) -> list:
    """The shards of a split, sorted by name (the index's list if present, else the directory's). For a URL
    (http(s)://, s3://) the index is required and the shards are URLs (str), checked when they are read."""
    from llmtts.data import remote

    if remote.is_url(shard_dir):
        index = read_index(shard_dir)
        return sorted(remote.join(str(shard_dir), s["path"]) for s in index["shards"] if s["split"] == split)
    shard_dir = Path(shard_dir)
    if (shard_dir / INDEX_NAME).is_file():
        index = read_index(shard_dir)
        paths = [shard_dir / s["path"] for s in index["shards"] if s["split"] == split]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise UserError(f"{shard_dir}/index.json lists {len(missing)} missing shard(s), e.g. {missing[0]}")
        return sorted(paths)
    return sorted((shard_dir / split).glob("*.tar"))
