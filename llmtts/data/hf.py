"""``--format hf``: a local Hugging Face ``datasets`` folder written by ``save_to_disk`` (one ``Dataset``, or a
``DatasetDict`` whose splits are all read).

Audio is never decoded by ``datasets``: since 4.0 its ``Audio`` feature decodes through torchcodec, which needs
FFmpeg's shared libraries and a torch build it was compiled against (this project pins its own CPU torch). The
column is read with ``Audio(decode=False)`` instead, which gives the stored ``{"bytes", "path"}`` (what
``save_to_disk`` embeds: the original file's encoded bytes), and soundfile decodes those bytes like any other
file. Nothing touches the network: ``load_from_disk`` memory-maps local Arrow files, and the offline switches
are set before ``datasets`` is imported.

An utterance's ``audio`` is a reference ``hf-row:DIR|SPLIT|ROW`` that ``fetch_audio`` resolves in the ingestion
worker (one memory-mapped dataset per process), so rows are read where they are shard-encoded, not all at once.
"""
from __future__ import annotations

import os
from pathlib import Path

from llmtts.errors import UserError
from llmtts.optional import require

HF_PREFIX = "hf-row:"
# Column names tried in order when the dataset does not say (the common ones on the Hub).
TEXT_COLUMNS = ("text", "transcription", "sentence", "transcript", "normalized_text", "raw_text")
NORMALIZED_COLUMNS = ("normalized_text", "text_normalized")
SPEAKER_COLUMNS = ("speaker", "speaker_id", "client_id", "spk_id")
ID_COLUMNS = ("id", "utterance_id", "utt_id", "file_id")


def _datasets():
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # read at import: never look anything up online
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return require("datasets", "--format hf")


def _splits(root: Path) -> list[str]:
    """``[""]`` for a saved ``Dataset``, the split names for a saved ``DatasetDict``."""
    if (root / "dataset_dict.json").is_file():
        import json

        try:
            splits = json.loads((root / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{root / 'dataset_dict.json'}: not a datasets DatasetDict description") from None
        return [str(s) for s in splits]
    if (root / "state.json").is_file() and (root / "dataset_info.json").is_file():
        return [""]
    raise UserError(f"{root}: not a Hugging Face dataset saved with save_to_disk (no state.json + "
                    "dataset_info.json, nor dataset_dict.json)")


_OPEN: dict[tuple[str, str], object] = {}


def _load(root: str, split: str):
    """The split as a ``datasets.Dataset`` with its audio column left encoded (cached per process)."""
    key = (root, split)
    if key not in _OPEN:
        ds_mod = _datasets()
        path = Path(root) / split if split else Path(root)
        try:
            ds = ds_mod.load_from_disk(str(path))
        except Exception as exc:  # noqa: BLE001 - datasets raises many types for a damaged folder
            raise UserError(f"{path}: cannot load the saved dataset ({type(exc).__name__}: {exc})") from None
        col = audio_column(ds, path)
        _OPEN[key] = (ds.cast_column(col, ds_mod.Audio(decode=False)), col)
    return _OPEN[key]


def audio_column(ds, where: Path) -> str:
    """The first column whose feature is ``Audio``, else one named ``audio``."""
    import datasets

    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Audio):
            return name
    if "audio" in ds.column_names:
        raise UserError(f"{where}: column 'audio' is not an Audio feature ({ds.features['audio']}); "
                        "cast it first: ds.cast_column('audio', datasets.Audio())")
    raise UserError(f"{where}: no Audio column (columns: {', '.join(ds.column_names)})")


def _pick(columns: list[str], wanted: tuple[str, ...]) -> str | None:
    return next((c for c in wanted if c in columns), None)


def read_hf(root: Path):
    """Utterances of every split: text from the first of ``TEXT_COLUMNS``, speaker from ``SPEAKER_COLUMNS``
    (else the folder's name), key from ``ID_COLUMNS`` (else ``SPLIT_ROW``). Audio stays unread here."""
    from llmtts.data.records import Reject, Utterance, safe_key

    root = root.resolve()
    utts, rejects = [], []
    for split in _splits(root):
        ds, col = _load(str(root), split)
        where = root / split if split else root
        text_col = _pick(ds.column_names, TEXT_COLUMNS)
        if text_col is None:
            raise UserError(f"{where}: no transcript column (looked for {', '.join(TEXT_COLUMNS)}; "
                            f"columns: {', '.join(ds.column_names)})")
        norm_col = _pick(ds.column_names, NORMALIZED_COLUMNS)
        spk_col, id_col = _pick(ds.column_names, SPEAKER_COLUMNS), _pick(ds.column_names, ID_COLUMNS)
        rows = ds.select_columns(list(dict.fromkeys(c for c in (text_col, norm_col, spk_col, id_col) if c))).to_dict()
        for i in range(ds.num_rows):
            raw_id = str(rows[id_col][i]) if id_col else f"{split or 'row'}_{i:07d}"
            key = safe_key(f"{split}_{raw_id}" if split and id_col else raw_id)
            ref = f"{HF_PREFIX}{root}|{split}|{i}"
            text = rows[text_col][i]
            if not isinstance(text, str):
                rejects.append(Reject(key, ref, "bad_text", f"{text_col} is {type(text).__name__}, not text"))
                continue
            norm = rows[norm_col][i] if norm_col and norm_col != text_col else None
            speaker = str(rows[spk_col][i]) if spk_col and rows[spk_col][i] is not None else root.name
            utts.append(Utterance(key, ref, text.strip(), speaker, f"{split + '/' if split else ''}{i}",
                                  norm if isinstance(norm, str) and norm.strip() else None))
    return utts, rejects


def fetch_audio(ref: str) -> bytes | str:
    """The encoded bytes of row ``ref`` (``hf-row:DIR|SPLIT|ROW``), or the path of its file when the dataset
    stores a path only (relative paths resolve against DIR). Raises ``UserError`` for an empty cell."""
    root, split, row = ref[len(HF_PREFIX):].rsplit("|", 2)
    ds, col = _load(root, split)
    cell = ds[int(row)][col]
    if isinstance(cell, dict) and cell.get("bytes"):
        return bytes(cell["bytes"])
    path = cell.get("path") if isinstance(cell, dict) else cell
    if not path:
        raise UserError(f"{ref}: the audio cell holds neither bytes nor a path")
    return path if os.path.isabs(path) else str(Path(root) / path)
