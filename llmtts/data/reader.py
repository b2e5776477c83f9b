"""The streaming shard reader every trainer uses: ``ShardLoader``.

    loader = ShardLoader("shards/", "train", rank, world_size,
                         length_fn=lambda s: len(s["audio"]), collate_fn=my_collate,
                         batch_budget=160_000, max_batch_size=16, num_workers=2, seed=0)
    for batch in loader: ...              # endless: cycles epochs forever
    state = loader.state_dict()           # store per rank in the checkpoint
    loader.load_state_dict(state)         # a new iterator continues with the same remaining batches

Constructor: ``ShardLoader(shard_dir, split, rank, world_size, *, length_fn, collate_fn=identity,
batch_budget, max_batch_size, shuffle_buffer=256, num_workers=0, seed=0, endless=True, shuffle=True,
fields=None, transform=None, bucket_size=max(4 * max_batch_size, 64), prefetch_factor=2)``, or
``ShardLoader.from_config(shard_dir, split, rank, world_size, data_cfg, train=True, length_fn=..., ...)``
with a ``llmtts.train.config.DataConfig``. ``loader.stats`` counts samples, batches and skips by reason.

Pipeline, per *slot* (one slot = one (rank, DataLoader worker) pair; ``S = world_size * num_workers``):

1. **Shard assignment.** For epoch ``e`` the shard list is permuted with ``(seed, e)`` and shard at
   position ``j`` goes to slot ``(j + e) % S``. Every sample is read by exactly one slot per epoch,
   also when the shard count is not a multiple of ``S`` (some slots then get one shard fewer that
   epoch, or none); the ``+ e`` rotation makes every slot receive shards within any ``S`` epochs.
2. **Shuffle buffer** of ``shuffle_buffer`` raw (still encoded) samples, RNG seeded by ``(seed, e, slot)``.
3. **Decode**: ``flac`` -> ``audio`` (float32 mono numpy) + ``sample_rate``; ``json`` -> dict under
   ``json``; ``codes.npy`` -> ``codes``; ``hidden.npy`` -> ``hidden`` (or the member of the format the
   index records: ``llmtts.data.hidden_format``); plus ``__key__`` and ``__url__``.
   Only the members named in ``fields`` are read at all (the LLM stage never touches audio bytes).
   A sample whose member is corrupt or missing, or an unreadable tar, is skipped and counted by
   reason in ``loader.stats``; it never stops a run. ``__epoch__`` and ``__seed__`` (a 32-bit int fixed
   by ``(seed, epoch, key)``) are added: transforms that crop at random should draw from
   ``np.random.default_rng(sample["__seed__"])`` so that a resumed run crops identically.
4. ``transform(sample) -> sample | None`` (the stage's crop / filter; ``None`` = dropped, counted).
5. **Length-bucketed dynamic batches**: ``bucket_size`` samples are sorted by ``length_fn(sample)`` and
   cut greedily into batches with ``n * max_length <= batch_budget`` and ``n <= max_batch_size``; the
   batch order inside a bucket is shuffled. A sample longer than ``batch_budget`` is skipped
   (``over_budget``). ``collate_fn(list_of_samples)`` runs in the worker.

``shard_dir`` may also be an ``http(s)://`` or ``s3://`` URL (``llmtts.data.remote``): shards are streamed
with counted, logged retries that resume at the byte reached (``loader.stats["retries"]``), so the
semantics above hold unchanged; a missing or forbidden URL is a ``UserError``.

Equal work per rank (no DDP/FSDP hang): with ``endless=True`` (training) every slot cycles epochs
forever, so every rank can always produce its next batch; the trainer stops at ``max_steps``.
An "epoch" is per slot: a slot with less data in an epoch starts the next one earlier. For
validation, either take a fixed number of batches per rank from an endless loader
(``itertools.islice(loader, trainer.eval_batches)``; build a fresh loader per evaluation, as
iteration advances the position, and every evaluation sees the same batches), or use ``endless=False`` (exactly one epoch)
with ``agree_num_batches(loader)``, which counts the local batches and takes the minimum over ranks.

Resume: ``state_dict()`` holds, per slot, the epoch and the number of batches already *yielded to the
caller* (prefetched batches don't count), plus which worker is due next. Every stage of the pipeline
is deterministic, so a new iterator replays the slot's epoch and drops the batches already consumed
(decoding them, but without collating), giving the same remaining sequence of batches. The state is
per rank: save each rank's own. A state from a different ``world_size``/``num_workers``/``seed``
resumes at the start of the next epoch (logged).
"""
from __future__ import annotations

import io
import logging
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_expander

from llmtts.data import remote
from llmtts.data.hidden_format import HiddenFormat
from llmtts.data.shards import list_shards, read_index
from llmtts.distributed import trace
from llmtts.errors import UserError

log = logging.getLogger(__name__)

# ``audio_crop``: the same FLAC member as ``audio``, decoded lazily (``LazyAudio``) for readers that keep one
# crop of each utterance (the decoder keeps ~1 s of a 5 s clip: decoding all of it made the reader its bottleneck).
FIELDS = ("audio", "audio_crop", "codes", "hidden")
_MEMBER_OF_FIELD = {"audio": "flac", "audio_crop": "flac", "codes": "codes.npy", "hidden": "hidden.npy"}
STATE_VERSION = 1


# --- pure, deterministic pieces (also used directly by tests and benchmarks) ---------------------
def assign_shards(num_shards: int, num_slots: int, epoch: int, seed: int) -> list[list[int]]:
    """Shard indices per slot for ``epoch``: a (seed, epoch) permutation dealt round-robin from slot
    ``epoch % num_slots``. Each shard goes to exactly one slot."""
    order = np.random.default_rng([seed, epoch, 0x5A4D]).permutation(num_shards)
    slots: list[list[int]] = [[] for _ in range(num_slots)]
    for j, shard in enumerate(order.tolist()):
        slots[(j + epoch) % num_slots].append(shard)
    return slots


def shuffle_stream(items: Iterable[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """Reservoir-style shuffle buffer: deterministic for a given rng state."""
    if size <= 1:
        yield from items
        return
    buf: list[Any] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        i = int(rng.integers(len(buf)))
        yield buf[i]
        buf[i] = item
    for i in rng.permutation(len(buf)).tolist():
        yield buf[i]


def bucket_batches(items: Iterable[Any], length_fn: Callable[[Any], float], batch_budget: float,
                   max_batch_size: int, bucket_size: int, rng: np.random.Generator | None,
                   on_skip: Callable[[str], None] = lambda reason: None) -> Iterator[list[Any]]:
    """Group items into batches whose padded cost ``len(batch) * max(length)`` fits ``batch_budget``.

    Items are collected ``bucket_size`` at a time and sorted by length so batches hold similar lengths;
    batch order within a bucket is shuffled by ``rng`` (kept in sorted order when ``rng`` is None).
    """
    def flush(pool: list[tuple[float, int, Any]]) -> Iterator[list[Any]]:
        pool.sort(key=lambda t: (t[0], t[1]))
        batches, cur, cur_max = [], [], 0.0
        for length, _, item in pool:
            new_max = max(cur_max, length)
            if cur and (len(cur) >= max_batch_size or (len(cur) + 1) * new_max > batch_budget):
                batches.append(cur)
                cur, new_max = [], length
            cur.append(item)
            cur_max = new_max
        if cur:
            batches.append(cur)
        order = rng.permutation(len(batches)).tolist() if rng is not None else range(len(batches))
        for i in order:
            yield batches[i]

    pool: list[tuple[float, int, Any]] = []
    for n, item in enumerate(items):
        try:
            length = float(length_fn(item))
        except Exception as exc:  # a sample missing what the stage needs: skip it, don't crash
            on_skip(f"length_error:{type(exc).__name__}")
            continue
        if length > batch_budget:
            on_skip("over_budget")
            continue
        pool.append((length, n, item))
        if len(pool) >= bucket_size:
            yield from flush(pool)
            pool = []
    if pool:
        yield from flush(pool)


def _read_flac(data: bytes) -> tuple[np.ndarray, int]:
    with sf.SoundFile(io.BytesIO(data)) as f:
        if f.subtype == "PCM_16":  # our shards: decoding to int16 and scaling is ~20% faster, same values
            return f.read(dtype="int16", always_2d=False).astype(np.float32) * np.float32(1 / 32768), f.samplerate
        return f.read(dtype="float32", always_2d=False), f.samplerate


class BadFlac(Exception):
    """A FLAC member whose frames fail to decode (found when a ``LazyAudio`` slice reads them)."""


class LazyAudio:
    """A FLAC member decoded on slicing: ``len()`` is its frame count from the header, ``audio[a:b]`` seeks and
    decodes only those frames (mono float32, the values ``_read_flac`` gives: FLAC is lossless and libsndfile's
    seek is sample-exact, tested). Lives only inside the reader's process (it is sliced by the stage's transform)."""

    def __init__(self, data: bytes):
        self._file = sf.SoundFile(io.BytesIO(data))
        self.sample_rate = int(self._file.samplerate)
        if self._file.frames <= 0:
            raise BadFlac("no frames")

    def __len__(self) -> int:
        return int(self._file.frames)

    def __getitem__(self, index: slice) -> np.ndarray:
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise IndexError("LazyAudio takes contiguous slices only")
        f = self._file
        try:
            f.seek(start)
            if f.subtype == "PCM_16":  # as _read_flac: int16 then scale, the same values
                wav = f.read(max(stop - start, 0), dtype="int16", always_2d=True).astype(np.float32) * np.float32(1 / 32768)
            else:
                wav = f.read(max(stop - start, 0), dtype="float32", always_2d=True)
        except Exception as exc:
            raise BadFlac(str(exc)) from None
        if len(wav) != max(stop - start, 0):  # frames the header promised but the stream lacks
            raise BadFlac(f"read {len(wav)} of {stop - start} frames")
        wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
        if not np.isfinite(wav).all():
            raise BadFlac("non-finite samples")
        return np.ascontiguousarray(wav, dtype=np.float32)


def member_of(field: str, hidden_format: HiddenFormat | None = None) -> str:
    """The tar member a field is read from (the hidden states' depends on the shards' format)."""
    if field == "hidden" and hidden_format is not None:
        return hidden_format.member
    return _MEMBER_OF_FIELD[field]


def hidden_format_of(shard_dir: str | Path) -> HiddenFormat:
    """The hidden-state format ``shard_dir/index.json`` records (a folder without an index: the original fp16)."""
    if remote.is_url(shard_dir) or (Path(shard_dir) / "index.json").is_file():
        return HiddenFormat.from_index(read_index(shard_dir), f"{shard_dir}/index.json")
    return HiddenFormat("fp16", "none")


def decode_sample(raw: dict, fields: Sequence[str] | None,
                  hidden_format: HiddenFormat | None = None) -> tuple[dict | None, str | None]:
    """Raw tar members -> decoded sample, or (None, reason) when a member is missing or corrupt.
    ``hidden_format``: how the shards store ``hidden`` (``hidden_format_of``; None = the original fp16)."""
    import json

    out: dict[str, Any] = {"__key__": raw.get("__key__"), "__url__": raw.get("__url__")}
    if "json" not in raw:
        return None, "missing_json"
    try:
        meta = json.loads(raw["json"])
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except Exception:
        return None, "bad_json"
    out["json"] = meta
    wanted = fields if fields is not None else [f for f in FIELDS if f != "audio_crop" and member_of(f, hidden_format) in raw]
    for f in wanted:
        member = member_of(f, hidden_format)
        if member not in raw:
            return None, f"missing_{member}"
        if f == "audio_crop":
            try:
                out["audio"] = LazyAudio(raw[member])
            except Exception:
                return None, "bad_flac"
            out["sample_rate"] = out["audio"].sample_rate
        elif f == "audio":
            try:
                wav, sr = _read_flac(raw[member])
            except Exception:
                return None, "bad_flac"
            if wav.ndim == 2:
                wav = wav.mean(axis=1)
            if wav.size == 0 or not np.isfinite(wav).all():
                return None, "bad_flac"
            out["audio"], out["sample_rate"] = np.ascontiguousarray(wav, dtype=np.float32), int(sr)
        else:
            try:
                if f == "hidden" and hidden_format is not None:
                    arr = hidden_format.decode(raw[member])
                else:
                    arr = np.load(io.BytesIO(raw[member]), allow_pickle=False)
            except Exception:
                return None, f"bad_{member.replace('.', '_')}"
            out[f] = arr
    return out, None


# --- the per-slot stream --------------------------------------------------------------------------
@dataclass
class _Spec:
    """Everything a worker needs to rebuild its stream (picklable)."""

    shards: list[str]
    rank: int
    world_size: int
    num_workers: int
    length_fn: Callable[[dict], float]
    collate_fn: Callable[[list[dict]], Any]
    batch_budget: float
    max_batch_size: int
    shuffle_buffer: int
    bucket_size: int
    seed: int
    endless: bool
    shuffle: bool
    fields: Optional[tuple[str, ...]]
    transform: Optional[Callable[[dict], Optional[dict]]]
    hidden_format: Optional[HiddenFormat] = None


class _SlotStream:
    """The batches of one slot, starting at (epoch, batches already consumed)."""

    def __init__(self, spec: _Spec, slot: int, epoch: int, skip_batches: int, collate: bool = True,
                 base_stats: dict | None = None):
        self.spec, self.slot, self.epoch, self.skip, self.collate = spec, slot, epoch, skip_batches, collate
        # Counts up to the start of ``epoch`` (from a checkpoint): replaying the epoch adds the rest, so a
        # resumed run reports the same counts as the uninterrupted one.
        self.stats: Counter = Counter(base_stats or {})
        self._warned: set[str] = set()

    def _skip(self, reason: str) -> None:
        self.stats[reason] += 1
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning("skipping samples (%s) in slot %d; counts are in loader.stats", reason, self.slot)

    def _handler(self, exc: Exception) -> bool:
        if isinstance(exc, UserError):  # a URL that is missing, forbidden or down past its retries: stop
            raise exc
        self._skip("bad_tar")
        return True  # continue with the next member / shard

    def _retried(self, url: str, why: str) -> None:
        # remote.RemoteFile logged the warning line; the count goes to loader.stats["retries"]
        self.stats["retries"] += 1


    def _raw_samples(self, shard_ids: list[int]) -> Iterator[dict]:
        members = None
        if self.spec.fields is not None:
            members = {"json"} | {member_of(f, self.spec.hidden_format) for f in self.spec.fields}

        def select(fname: str) -> bool:
            return members is None or fname.split("/")[-1].split(".", 1)[-1].lower() in members

        for i in shard_ids:
            url = self.spec.shards[i]
            try:
                stream = remote.open_shard(url, on_retry=self._retried)
            except OSError:
                self._skip("bad_tar")
                continue
            with stream:
                files = tar_file_expander([{"url": url, "stream": stream}], handler=self._handler,
                                          select_files=select)
                yield from group_by_keys(files, handler=self._handler)

    def _decoded(self, raw: Iterable[dict], epoch: int) -> Iterator[dict]:
        for r in raw:
            sample, reason = decode_sample(r, self.spec.fields, self.spec.hidden_format)
            if sample is None:
                self._skip(reason or "bad_sample")
                continue
            # For the stage's random crops: a seed fixed by (seed, epoch, key), so a resumed run
            # (which replays the epoch in a fresh worker) crops exactly as the uninterrupted one.
            sample["__epoch__"] = epoch
            sample["__seed__"] = zlib.crc32(f"{self.spec.seed}:{epoch}:{sample['__key__']}".encode())
            if self.spec.transform is not None:
                try:
                    sample = self.spec.transform(sample)
                except Exception as exc:
                    self._skip(f"transform_error:{type(exc).__name__}")
                    continue
                if sample is None:
                    self._skip("filtered")
                    continue
            self.stats["samples"] += 1
            yield sample

    def epoch_batches(self, epoch: int) -> Iterator[list[dict]]:
        spec = self.spec
        num_slots = spec.world_size * spec.num_workers
        mine = assign_shards(len(spec.shards), num_slots, epoch, spec.seed)[self.slot]
        rng = np.random.default_rng([spec.seed, epoch, self.slot, 0xB0C4])
        raw = self._raw_samples(mine)
        if spec.shuffle:
            raw = shuffle_stream(raw, spec.shuffle_buffer, rng)
        bucket = max(spec.bucket_size, 1)
        return bucket_batches(self._decoded(raw, epoch), spec.length_fn, spec.batch_budget, spec.max_batch_size,
                              bucket, rng if spec.shuffle else None, on_skip=self._skip)

    def __iter__(self) -> Iterator[tuple]:
        num_slots = self.spec.world_size * self.spec.num_workers
        empty_epochs = 0
        while True:
            produced = 0
            epoch_stats = dict(self.stats)
            for b, items in enumerate(self.epoch_batches(self.epoch), start=1):
                produced += 1
                self.stats["batches"] += 1
                if b <= self.skip:  # consumed before the checkpoint: replayed, not collated
                    continue
                if self.collate:  # a batch going to the trainer (not num_batches() counting)
                    trace.record_batch(self.spec.rank, self.slot, self.epoch, b, [x["__key__"] for x in items])
                batch = self.spec.collate_fn(items) if self.collate else items
                yield batch, self.slot, self.epoch, b, dict(self.stats), epoch_stats
            self.skip = 0
            if not self.spec.endless:
                return
            self.epoch += 1
            # Every slot gets a shard within any num_slots epochs; if none of them gave a sample,
            # the data is unreadable and cycling would spin forever.
            empty_epochs = empty_epochs + 1 if produced == 0 else 0
            if empty_epochs > num_slots + 1:
                raise UserError(f"no usable samples in {len(self.spec.shards)} shard(s) "
                                f"(e.g. {self.spec.shards[0]}); skipped: {dict(self.stats)}")


class _Dataset(IterableDataset):
    def __init__(self, spec: _Spec, starts: dict[int, tuple[int, int]], first_worker: int,
                 base_stats: dict[int, dict]):
        self.spec, self.starts, self.first_worker, self.base_stats = spec, starts, first_worker, base_stats

    def __iter__(self):
        info = get_worker_info()
        w = info.id if info is not None else 0
        # DataLoader always polls worker 0 first; rotating the slots makes the slot due next on resume
        # play worker 0, so the interleaving of workers' batches continues exactly where it stopped.
        local = (w + self.first_worker) % self.spec.num_workers
        slot = self.spec.rank * self.spec.num_workers + local
        epoch, skip = self.starts.get(slot, (0, 0))
        return iter(_SlotStream(self.spec, slot, epoch, skip, base_stats=self.base_stats.get(slot)))


def _passthrough(x):
    return x


def _one_line_errors(source: Iterable[tuple]) -> Iterator[tuple]:
    """A ``UserError`` from a DataLoader worker arrives with the worker's traceback in its message; the CLI
    prints user errors as one line, so keep only the original message (the traceback's last line)."""
    it = iter(source)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except UserError as exc:
            lines = str(exc).strip().splitlines()
            if len(lines) <= 1:
                raise
            prefix = f"{UserError.__module__}.{UserError.__name__}: "
            last = next((x for x in reversed(lines) if x.startswith(prefix)), lines[-1])
            raise UserError(last.removeprefix(prefix)) from None
        yield item


class ShardLoader:
    """Iterable of batches for one rank; see the module docstring for the policies."""

    def __init__(self, shard_dir: str | Path, split: str, rank: int, world_size: int, *,
                 length_fn: Callable[[dict], float], collate_fn: Callable[[list[dict]], Any] = _passthrough,
                 batch_budget: float, max_batch_size: int, shuffle_buffer: int = 256, num_workers: int = 0,
                 seed: int = 0, endless: bool = True, shuffle: bool = True,
                 fields: Sequence[str] | None = None, transform: Callable[[dict], dict | None] | None = None,
                 bucket_size: int | None = None, prefetch_factor: int = 2):
        if not 0 <= rank < world_size:
            raise UserError(f"rank {rank} is outside world_size {world_size}")
        if max_batch_size < 1 or batch_budget <= 0:
            raise UserError(f"need max_batch_size >= 1 and batch_budget > 0 (got {max_batch_size}, {batch_budget})")
        if fields is not None:
            bad = [f for f in fields if f not in FIELDS]
            if bad:
                raise UserError(f"unknown field(s) {bad}; choose from {list(FIELDS)} (json is always decoded)")
        shards = [str(p) for p in list_shards(shard_dir, split)]
        if not shards:
            raise UserError(f"no shards for split '{split}' in {shard_dir} (expected {shard_dir}/{split}/*.tar)")
        self.shard_dir, self.split = remote.location(shard_dir), split
        self.num_workers = max(int(num_workers), 0)
        self.prefetch_factor = prefetch_factor
        self.spec = _Spec(
            shards=shards, rank=rank, world_size=world_size, num_workers=max(self.num_workers, 1),
            length_fn=length_fn, collate_fn=collate_fn, batch_budget=float(batch_budget),
            max_batch_size=int(max_batch_size), shuffle_buffer=int(shuffle_buffer),
            bucket_size=int(bucket_size or max(4 * max_batch_size, 64)), seed=int(seed), endless=endless,
            shuffle=shuffle, fields=tuple(fields) if fields is not None else None, transform=transform,
            hidden_format=hidden_format_of(shard_dir) if fields is None or "hidden" in fields else None)
        slots = world_size * self.spec.num_workers
        if len(shards) < slots and rank == 0:
            log.warning("%s/%s: %d shard(s) for %d rank x worker slots: some slots idle each epoch (still exactly "
                        "once per epoch); write more, smaller shards for balanced ranks", shard_dir, split,
                        len(shards), slots)
        # Position: slot -> (epoch, batches consumed in that epoch); which local worker is due next.
        self._pos: dict[int, tuple[int, int]] = {}
        self._next_worker = 0
        self._stats: dict[int, dict] = {}
        self._epoch_stats: dict[int, dict] = {}  # slot -> its stats when its current epoch began (for resume)

    @classmethod
    def from_config(cls, shard_dir: str | Path, split: str, rank: int, world_size: int, cfg: Any, *,
                    train: bool = True, **kwargs: Any) -> "ShardLoader":
        """Build from a ``llmtts.train.config.DataConfig`` (batch_budget, max_batch_size, shuffle_buffer,
        num_workers, seed); ``kwargs`` give ``length_fn``, ``collate_fn`` and the rest."""
        kwargs.setdefault("endless", True)
        kwargs.setdefault("shuffle", train)
        return cls(shard_dir, split, rank, world_size, batch_budget=cfg.batch_budget,
                   max_batch_size=cfg.max_batch_size, shuffle_buffer=cfg.shuffle_buffer,
                   num_workers=cfg.num_workers, seed=cfg.seed, **kwargs)

    # --- iteration ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        spec = self.spec
        if self.num_workers == 0:
            slot = spec.rank
            epoch, skip = self._pos.get(slot, (0, 0))
            source: Iterable[tuple] = _SlotStream(spec, slot, epoch, skip, base_stats=self._epoch_stats.get(slot))
        else:
            # Its own generator: a DataLoader iterator otherwise draws its workers' base seed from the
            # global torch RNG, so the resumed run (one more iterator) would drift from the uninterrupted one.
            source = DataLoader(_Dataset(spec, dict(self._pos), self._next_worker, dict(self._epoch_stats)),
                                batch_size=None, num_workers=self.num_workers, collate_fn=_passthrough,
                                prefetch_factor=self.prefetch_factor, persistent_workers=False,
                                generator=torch.Generator().manual_seed(spec.seed))
        for batch, slot, epoch, b, stats, epoch_stats in _one_line_errors(source):
            self._pos[slot] = (epoch, b)
            self._stats[slot] = stats
            self._epoch_stats[slot] = epoch_stats
            local = slot - spec.rank * spec.num_workers
            self._next_worker = (local + 1) % spec.num_workers
            yield batch

    @property
    def stats(self) -> dict[str, int]:
        """Counts over this rank's slots: ``samples``, ``batches`` and skipped samples by reason."""
        total: Counter = Counter()
        for s in self._stats.values():
            total.update(s)
        return dict(total)

    def num_batches(self) -> int:
        """Batches this rank yields in one epoch (a full pass without collating; for finite loaders)."""
        spec = self.spec
        n = 0
        for local in range(spec.num_workers):
            slot = spec.rank * spec.num_workers + local
            epoch = self._pos.get(slot, (0, 0))[0]
            stream = _SlotStream(spec, slot, epoch, 0, collate=False)
            n += sum(1 for _ in stream.epoch_batches(epoch))
        return n

    # --- position -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "version": STATE_VERSION, "rank": self.spec.rank, "world_size": self.spec.world_size,
            "num_workers": self.spec.num_workers, "seed": self.spec.seed, "num_shards": len(self.spec.shards),
            "slots": {str(k): {"epoch": e, "batches": b, "stats": self._stats.get(k, {}),
                               "epoch_stats": self._epoch_stats.get(k, {})} for k, (e, b) in sorted(self._pos.items())},
            "next_worker": self._next_worker,
        }

    def load_state_dict(self, state: dict) -> None:
        slots = {int(k): (int(v["epoch"]), int(v["batches"])) for k, v in state.get("slots", {}).items()}
        same = all(state.get(k) == v for k, v in (("rank", self.spec.rank), ("world_size", self.spec.world_size),
                                                  ("num_workers", self.spec.num_workers), ("seed", self.spec.seed),
                                                  ("num_shards", len(self.spec.shards))))
        if same and state.get("version") == STATE_VERSION:
            self._pos = slots
            self._next_worker = int(state.get("next_worker", 0))
            saved = state.get("slots", {})
            self._stats = {int(k): dict(v.get("stats", {})) for k, v in saved.items()}
            self._epoch_stats = {int(k): dict(v.get("epoch_stats", {})) for k, v in saved.items()}
            return
        next_epoch = max((e for e, _ in slots.values()), default=-1) + 1
        log.warning("data position was saved with a different layout (rank/world_size/num_workers/seed/shards); "
                    "resuming every slot at the start of epoch %d", next_epoch)
        self._pos = {self.spec.rank * self.spec.num_workers + w: (next_epoch, 0) for w in range(self.spec.num_workers)}
        self._next_worker = 0


def agree_num_batches(loader: ShardLoader) -> int:
    """For a finite (``endless=False``) loader: the number of batches every rank should run, the minimum
    of the ranks' counts (all-reduced when torch.distributed is initialised), so no rank waits forever."""
    n = torch.tensor([loader.num_batches()], dtype=torch.long)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(n, op=torch.distributed.ReduceOp.MIN)
    return int(n.item())
