"""Evaluation sets: named groups of texts, each with reference audio where there is some, scored side by side.

One WER says little: a model that has not learned to speak and one that speaks its training sentences but not
new ones both score badly on held-out texts. Scoring a set of *training* sentences beside a set of *unseen*
ones tells the two apart (broken: both bad; not generalising: train good, unseen bad), each against the
judge's WER on the reference audio of the same texts (its ceiling).

``llmtts eval tts --set NAME[:N]=PATH`` (repeatable); PATH is one of
- a directory holding ``metadata.csv`` (LJSpeech layout, e.g. written by ``llmtts data corpus``): its texts,
  references ``PATH/wavs/ID.wav`` (or ``PATH/ID.wav``);
- a folder of shard tars, i.e. one split of a shard directory (``RUN/shards/audio/train``): the first N
  samples in stored order (shards sorted by name). Ingestion orders a split by a seeded permutation, so these
  are a deterministic random sample of it. Texts from each sample's json, references = the shard audio
  (written to ``OUT/NAME/ref/``); N is required here (or ``--max-utterances``);
- a text file (one text per line, or ``id|text``): texts only, no ceiling.
N: evaluate the first N utterances (default: ``--max-utterances``, else all).
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from llmtts.audio import save_wav
from llmtts.errors import UserError
from llmtts.eval.tts_eval import EvalSet, Utterance, add_reference_speakers, read_texts

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_SPEC = re.compile(r"^(?P<name>[^:=]+)(?::(?P<n>[^=]*))?=(?P<path>.+)$")


@dataclass
class SetSpec:
    name: str
    limit: int  # 0 = not given
    path: Path


def check_name(name: str, flag: str = "--set") -> str:
    # the name becomes a directory under OUT and a label in the report
    if not _NAME.match(name):
        raise UserError(f"{flag} {name!r}: a set name uses only letters, digits, '_' and '-'")
    return name


def parse_set_spec(spec: str) -> SetSpec:
    """``NAME[:N]=PATH`` -> SetSpec (``N`` absent: limit 0)."""
    m = _SPEC.match(spec)
    if m is None:
        raise UserError(f"--set {spec!r}: expected NAME=PATH or NAME:N=PATH (e.g. train:16=RUN/shards/audio/train)")
    name, n = check_name(m["name"]), m["n"]
    if n is not None and not (n.isdigit() and int(n) > 0):
        raise UserError(f"--set {spec!r}: N must be a positive integer, got {n!r}")
    return SetSpec(name, int(n) if n else 0, Path(m["path"]))


def _is_shard_split(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*.tar"))


def load_set(spec: SetSpec, out_dir: Path, default_limit: int = 0) -> EvalSet:
    """Read one set; shard references are written to ``OUT/NAME/ref/`` (the report plays them from there)."""
    path, limit = spec.path, spec.limit or default_limit
    where = f"--set {spec.name}={path}"
    if (path / "metadata.csv").is_file():
        utts, refs = add_reference_speakers(read_texts(path / "metadata.csv", label=where), path), path
    elif _is_shard_split(path):
        if not limit:
            raise UserError(f"{where}: a shard split needs a count: --set {spec.name}:N={path}")
        return EvalSet(spec.name, *_shard_set(path, limit, out_dir / spec.name / "ref", where), str(path))
    elif path.is_dir() and (path / "index.json").is_file():
        raise UserError(f"{where}: a shard directory; name one split, e.g. {path / 'train'}")
    elif path.is_dir():
        raise UserError(f"{where}: neither an LJSpeech directory (metadata.csv) nor a shard split (*.tar)")
    else:
        utts, refs = read_texts(path, label=where), None
    return EvalSet(spec.name, utts[:limit] if limit else utts, refs, str(path))


def _shard_set(split_dir: Path, limit: int, ref_dir: Path, where: str) -> tuple[list[Utterance], Path]:
    """The first ``limit`` samples of a shard split: texts, and their audio as ``ref_dir/KEY.wav`` plus a
    ``metadata.csv`` (so the extracted references are an LJSpeech directory of their own)."""
    from llmtts.data.parallel_map import iter_shard

    utts: list[Utterance] = []
    rows: list[str] = []
    for shard in sorted(split_dir.glob("*.tar")):
        skip = functools.partial(log.warning, "%s: skipped a sample (%s)", shard)
        for s in iter_shard(shard, fields=["audio"], on_skip=skip):
            meta = s["json"]
            text = str(meta.get("text") or meta.get("normalized_text") or "").strip()
            if not text or "|" in text or "\n" in text:
                continue  # nothing to score against, or not representable in metadata.csv
            wav = s["audio"]
            n = meta.get("num_samples")  # token shards: the audio is zero-padded to whole tokens
            if isinstance(n, int) and 0 < n <= len(wav):
                wav = wav[:n]
            save_wav(ref_dir / f"{s['__key__']}.wav", wav, int(s["sample_rate"]))
            utts.append(Utterance(s["__key__"], text, str(meta["speaker"]) if meta.get("speaker") else None))
            rows.append(f"{s['__key__']}|{text}")
            if len(utts) == limit:
                break
        if len(utts) == limit:
            break
    if not utts:
        raise UserError(f"{where}: no usable samples (json with a text, and audio) in the shards")
    if len(utts) < limit:
        log.warning("%s: only %d samples, fewer than the %d asked for", where, len(utts), limit)
    (ref_dir / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return utts, ref_dir


def load_sets(specs: list[str], out_dir: Path, default_limit: int = 0,
              extra: EvalSet | None = None) -> list[EvalSet]:
    """Every ``--set``, in the order given, then ``extra`` (the set of ``--texts``/``--reference-dir``)."""
    sets = [load_set(parse_set_spec(s), out_dir, default_limit) for s in specs]
    if extra is not None:
        sets.append(extra)
    names = [s.name for s in sets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"set name {dup[0]!r} given twice (--set / --set-name): names must differ")
    if not sets:
        raise UserError("nothing to evaluate: give --set NAME=PATH, --texts or --reference-dir")
    return sets
