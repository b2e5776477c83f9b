"""Rank-parallel shard -> shard preprocessing (``llmtts codec encode``, ``llmtts llm dump-hidden``).

    def encode(in_tar: Path, writer: ShardWriter) -> None:
        for sample in iter_shard(in_tar):           # decoded samples of one input shard
            ...
            writer.write(sample["__key__"], {"flac": ..., "json": {...}, "codes.npy": codes})
            # or writer.reject("too_long") for a sample that is dropped

    map_shards("shards/audio", "shards/tokens", encode, kind="tokens", extra_index={"samples_per_token": 2048})

Contract (docs/CONVENTIONS.md): rank/world come from torchrun (``RANK``/``WORLD_SIZE``) or SLURM
(``SLURM_PROCID``/``SLURM_NTASKS``), else 0/1. Input shards of all splits, sorted by relative path,
are numbered globally; shard ``i`` goes to rank ``i % world``. Each output shard keeps the input's
relative name and is written atomically; beside it a ``.done.json`` (its ``ShardSummary``: samples,
seconds, speakers, rejected by reason) is written last. A shard whose ``.done.json`` exists is skipped, so
a re-run resumes. Rank 0 then waits until every ``.done.json`` exists and writes ``index.json`` from them
(no process group needed: works under srun as well as torchrun).

``input_dir`` may be an http(s):// or s3:// URL; ``out_dir`` may be s3://: each finished shard is uploaded
from a local temporary folder, then its ``.done.json``, and ``index.json`` last (``llmtts.data.remote``).
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from llmtts.data import outdir, remote
from llmtts.data.outdir import check_out_path
from llmtts.data.reader import decode_sample
from llmtts.data.shards import DONE_SUFFIX, INDEX_NAME, ShardSummary, ShardWriter, build_index, read_index, \
    write_index
from llmtts.distributed.process_group import env_ranks
from llmtts.errors import UserError
from llmtts.io import write_json_atomic

log = logging.getLogger(__name__)


def dist_env(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(rank, world_size) from torchrun or SLURM variables; (0, 1) when neither is set."""
    ranks = env_ranks(env)
    return ranks.rank, ranks.world_size


def input_shards(input_dir: str | Path, splits: Sequence[str] | None = None) -> list[str]:
    """Relative paths (``train/shard-000000.tar``) of the input shards, sorted."""
    if remote.is_url(input_dir):
        rels = [s["path"] for s in read_index(input_dir)["shards"]]
        return sorted(r for r in rels if splits is None or r.split("/")[0] in splits)
    input_dir = Path(input_dir)
    if (input_dir / INDEX_NAME).is_file():
        rels = [s["path"] for s in read_index(input_dir)["shards"]]
    else:
        rels = [p.relative_to(input_dir).as_posix() for p in input_dir.glob("*/*.tar")]
    if splits is not None:
        rels = [r for r in rels if r.split("/")[0] in splits]
    return sorted(rels)


def iter_shard(path: str | Path, fields: Sequence[str] | None = None,
               on_skip: Callable[[str], None] | None = None, hidden_format=None) -> Iterator[dict]:
    """Decoded samples of one shard in stored order (same decoding as ``ShardLoader``); corrupt
    samples are skipped and reported to ``on_skip(reason)``. ``hidden_format``: the shard folder's
    (``reader.hidden_format_of``; None = the original fp16 ``hidden.npy``)."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    skip = on_skip or (lambda reason: None)

    def handler(exc: Exception) -> bool:
        if isinstance(exc, UserError):  # a URL that is missing or down past its retries
            raise exc
        skip("bad_tar")
        return True

    with remote.open_shard(path) as stream:
        files = tar_file_expander([{"url": str(path), "stream": stream}], handler=handler)
        for raw in group_by_keys(files, handler=handler):
            sample, reason = decode_sample(raw, fields, hidden_format)
            if sample is None:
                skip(reason or "bad_sample")
                continue
            yield sample


def map_shards(input_dir: str | Path, out_dir: str | Path, fn: Callable[[Path, ShardWriter], Any], *,
               kind: str, extra_index: Mapping[str, Any] | None = None, rank: int | None = None,
               world_size: int | None = None, splits: Sequence[str] | None = None,
               wait_timeout_s: float | None = None, poll_s: float = 2.0,
               progress: bool = True) -> dict | None:
    """Run ``fn(input_tar_path, writer)`` for this rank's shards; rank 0 returns the written index
    (other ranks return None). ``fn`` may return a ``{reason: count}`` dict of skipped samples in
    addition to (or instead of) calling ``writer.reject``."""
    input_dir, out_dir = remote.location(input_dir), remote.location(out_dir)
    if rank is None or world_size is None:
        rank, world_size = dist_env()
    marker = check_output(input_dir, out_dir, kind)
    rels = input_shards(input_dir, splits)
    if not rels:
        raise UserError(f"no input shards under {input_dir} (expected {input_dir}/<split>/*.tar)")
    # Every rank marks the folder before writing into it (the same content on every rank); files of an earlier
    # run with other --splits stay listed, so a later `data shards` there may still remove them.
    mine = [r for i, r in enumerate(rels) if i % world_size == rank]
    bar = _progress(len(mine), f"rank {rank}", progress)
    if isinstance(out_dir, str):  # s3://: write each shard locally, upload it, then its .done.json
        _map_to_url(input_dir, out_dir, mine, fn, bar)
    else:
        owned = sorted(set(rels) | set((marker or {}).get("files", [])))
        outdir.claim(out_dir, {"written_by": "llmtts", "kind": kind, "input": _source(input_dir), "files": owned})
        for rel in mine:
            out_path, done_path = out_dir / rel, out_dir / (rel + DONE_SUFFIX)
            if not (done_path.is_file() and out_path.is_file()):  # else finished by an earlier run
                _write_shard(input_dir, rel, out_path, done_path, fn)
            bar.update(1)
    bar.close()
    if rank != 0:
        return None
    summaries = _wait_for_all(out_dir, rels, wait_timeout_s, poll_s)
    extra = dict(extra_index or {})
    try:  # carry everything dropped upstream, so the final index still accounts for every input file
        source = read_index(input_dir)
        upstream = Counter(source.get("rejected", {})) + Counter(source.get("source_rejected", {}))
        extra["source_rejected"] = dict(sorted(upstream.items()))
        extra["source_kind"] = source.get("kind")
    except UserError:
        pass
    index = build_index(kind, summaries, **extra)
    if isinstance(out_dir, str):
        with tempfile.TemporaryDirectory(prefix="llmtts-upload-") as tmp:
            remote.upload(write_index(tmp, index), remote.join(out_dir, INDEX_NAME))  # last: the folder is done
    else:
        write_index(out_dir, index)
    return index


def _source(input_dir: str | Path) -> str:
    return input_dir if isinstance(input_dir, str) else str(Path(input_dir).resolve())


def _write_shard(input_dir: str | Path, rel: str, out_path: Path, done_path: Path, fn: Callable) -> None:
    """One output shard (atomic), then its ``.done.json``."""
    src = remote.join(input_dir, rel) if isinstance(input_dir, str) else input_dir / rel
    with ShardWriter(out_path, rel_path=rel, split=rel.split("/")[0]) as writer:
        extra = fn(src, writer)
        if isinstance(extra, Mapping):
            for reason, n in extra.items():
                writer.reject(str(reason), int(n))
    write_json_atomic(done_path, writer.summary.to_dict())


def _map_to_url(input_dir: str | Path, out_url: str, mine: list[str], fn: Callable, bar) -> None:
    """Shards already marked done at the URL are skipped (resume); the rest go through a local temporary
    folder, one shard at a time: upload the shard, then its ``.done.json``, then delete both locally."""
    with tempfile.TemporaryDirectory(prefix="llmtts-upload-") as tmp:
        for rel in mine:
            done_url = remote.join(out_url, rel + DONE_SUFFIX)
            if not remote.exists(done_url):
                out_path, done_path = Path(tmp) / rel, Path(tmp) / (rel + DONE_SUFFIX)
                _write_shard(input_dir, rel, out_path, done_path, fn)
                remote.upload(out_path, remote.join(out_url, rel))
                remote.upload(done_path, done_url)
                out_path.unlink()
                done_path.unlink()
            bar.update(1)


def check_output(input_dir: str | Path, out_dir: str | Path, kind: str) -> dict | None:
    """Refuse an ``out_dir`` this map must not write into (callers run it before loading a model too): a file,
    the input or a folder above / inside it, a non-empty folder that is not ours. Finished shards are skipped
    by their ``.done.json``, so a folder made from another input or of another kind would mix stale shards
    in: refused as well. Returns the folder's marker (None if it has none)."""
    if remote.is_url(out_dir):
        return _check_url_output(str(out_dir), kind)
    out_dir = check_out_path(out_dir, [] if remote.is_url(input_dir) else [input_dir])
    index = outdir.shard_index_or_none(out_dir)
    source = _source(input_dir)
    # A finished run left an index of this kind; an interrupted one (of a version without the marker) left
    # .done.json files beside the input's shard names.
    recognised = (index is not None and index.get("kind") == kind) or any(
        (out_dir / (rel + DONE_SUFFIX)).is_file() for rel in input_shards(input_dir))
    marker = outdir.ensure_ours(out_dir, recognised=recognised, what=f"a {kind} shard folder")
    # A marker without a kind: the CLI's output policy claimed the folder, nothing was written into it yet.
    if marker is not None and "kind" in marker and (marker.get("kind"), marker.get("input")) != (kind, source):
        raise UserError(f"--out {out_dir}: holds {marker.get('kind')} shards made from {marker.get('input')}; "
                        f"choose a new --out for {kind} shards from {source} (or delete that folder)")
    return marker


def _check_url_output(out_url: str, kind: str) -> None:
    """An s3:// output: writable, and not a finished folder of another kind (no local marker to check)."""
    remote.require_writable(out_url)
    index_url = remote.join(out_url, INDEX_NAME)
    if remote.exists(index_url):
        other = read_index(out_url).get("kind")
        if other != kind:
            raise UserError(f"--out {out_url}: holds {other} shards; choose a new --out for {kind} shards")
    return None


def _done(out_dir: str | Path, rel: str) -> str | Path:
    return remote.join(out_dir, rel + DONE_SUFFIX) if isinstance(out_dir, str) else out_dir / (rel + DONE_SUFFIX)


def _wait_for_all(out_dir: str | Path, rels: list[str], timeout_s: float | None, poll_s: float) -> list[ShardSummary]:
    start, last_log = time.monotonic(), 0.0
    while True:
        missing = [r for r in rels if not (remote.exists(_done(out_dir, r)) if isinstance(out_dir, str)
                                           else _done(out_dir, r).is_file())]
        if not missing:
            break
        waited = time.monotonic() - start
        if timeout_s is not None and waited > timeout_s:
            raise UserError(f"{out_dir}: {len(missing)} shard(s) still unfinished after {timeout_s:.0f} s "
                            f"(e.g. {missing[0]}); did another rank fail? re-run to resume")
        if waited - last_log > 60:
            log.info("rank 0 waiting for %d shard(s) from other ranks (e.g. %s)", len(missing), missing[0])
            last_log = waited
        time.sleep(poll_s)
    out = []
    for r in rels:
        path = _done(out_dir, r)
        try:
            text = remote.read_bytes(path) if isinstance(path, str) else path.read_text()
            out.append(ShardSummary.from_dict(json.loads(text)))
        except (json.JSONDecodeError, KeyError) as exc:
            raise UserError(f"{path}: unreadable shard summary ({exc}); delete it and its shard to redo it")
    return out


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="shard", dynamic_ncols=True)
