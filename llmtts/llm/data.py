"""Token shards -> LLM training batches: sample -> ``Segment`` (transform) -> packed/padded ``LMBatch``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmtts.data.shards import read_index
from llmtts.errors import UserError
from llmtts.llm.hidden import training_ids
from llmtts.llm.packing import LMBatch, Segment, pack, pad
from llmtts.llm.vocab import Vocab


# Skipped-sample reasons: the reader counts a transform's exception by its class name.
class MultiCodebookCodes(Exception):
    pass


class CodeOutOfRange(Exception):
    pass


class UnknownSpeaker(Exception):
    pass


class MissingText(Exception):
    pass


def check_token_shards(input_dir: str | Path) -> dict:
    """The token shard index, with a clear error for a directory that is not one."""
    index = read_index(input_dir)
    if index["kind"] not in ("tokens", "hidden"):
        raise UserError(f"{input_dir}/index.json: kind is '{index['kind']}', the LLM trains on token shards "
                        "(made by `llmtts codec encode`)")
    return index


def check_single_codebook(input_dir: str | Path, split: str) -> None:
    """Fail fast (instead of skipping every sample) when the shards hold residual codes [T, Q]."""
    from llmtts.data.parallel_map import iter_shard
    from llmtts.data.shards import list_shards

    for shard in list_shards(input_dir, split)[:1]:
        for sample in iter_shard(shard, fields=("codes",)):
            shape = np.shape(sample["codes"])
            if len(shape) == 2 and shape[1] > 1:
                raise UserError(f"{shard}: codes of '{sample['__key__']}' have shape {list(shape)} ([T, Q] from a "
                                "residual codec); the LLM path takes single-codebook [T] codes (use an FSQ codec)")
            return


def n_audio_from_index(index: dict, input_dir: str | Path) -> int:
    n = index.get("codebook_size")
    if not isinstance(n, int) or n < 1:
        raise UserError(f"{input_dir}/index.json has no 'codebook_size'; set vocab.n_audio to the codec's "
                        "number of codes")
    if int(index.get("num_codebooks", 1)) != 1:
        raise UserError(f"{input_dir}: codes have {index['num_codebooks']} codebooks; the LLM path takes "
                        "single-codebook [T] codes (use an FSQ codec)")
    return n


@dataclass
class SampleToSegment:
    """Reader transform (picklable for DataLoader workers)."""

    vocab: Vocab
    frontend: Any
    max_length: int
    use_speakers: bool

    def __call__(self, sample: dict) -> dict | None:
        codes = np.asarray(sample["codes"])
        if codes.ndim == 2 and codes.shape[1] == 1:
            codes = codes[:, 0]
        if codes.ndim != 1:
            raise MultiCodebookCodes(str(codes.shape))
        if codes.size == 0:
            return None
        if codes.min() < 0 or codes.max() >= self.vocab.n_audio:
            raise CodeOutOfRange(f"{codes.min()}..{codes.max()}")
        meta = sample["json"]
        text = meta.get("normalized_text")
        if not isinstance(text, str) or not text.strip():
            raise MissingText(sample.get("__key__"))
        speaker = None
        if self.use_speakers:
            speaker = str(meta.get("speaker", ""))
            if speaker not in self.vocab.speakers:
                raise UnknownSpeaker(speaker)
        ids, n_prompt = training_ids(self.vocab, self.frontend, text, codes, speaker=speaker)
        if len(ids) > self.max_length:
            return None  # counted as "filtered" by the reader
        return {"__key__": sample.get("__key__"), "segment": Segment(ids, n_prompt)}


def segment_length(sample: dict) -> int:
    return len(sample["segment"])


@dataclass
class LMCollate:
    packed: bool
    row_length: int

    def __call__(self, samples: list[dict]) -> LMBatch:
        segs = [s["segment"] for s in samples]
        return pack(segs, self.row_length) if self.packed else pad(segs)
