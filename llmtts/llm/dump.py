"""``llmtts llm dump-hidden``: token shards -> hidden shards (the decoder stage's training data).

Each output sample is the input sample's members copied byte for byte (flac, json, codes.npy) plus
the states ``[T, d]``, row i = the post-norm final-layer state that audio token i is predicted from
(``llmtts.llm.hidden``: the same vectors inference hands to the decoder), stored in the format
``--hidden-dtype`` / ``--compression`` picks (``llmtts.data.hidden_format``; recorded in index.json).
Teacher-forced, several utterances packed per forward. Work is split over ranks by
``llmtts.data.parallel_map`` (shard i -> rank i % world, finished shards skipped on re-run); an
output shard holds the same samples as its input shard, so its size is bounded by the input's
(plus 1 KiB per token at d=512).
"""
from __future__ import annotations

import io
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from llmtts.data.hidden_format import HiddenFormat
from llmtts.data.shards import is_usable_key
from llmtts.distributed.process_group import pick_device
from llmtts.errors import UserError
from llmtts.llm.hidden import audio_state_positions, forward_with_hidden, training_ids
from llmtts.llm.packing import Segment, pack

log = logging.getLogger(__name__)


def _raw_samples(path: Path, skip) -> Iterator[dict]:
    from webdataset.tariterators import group_by_keys, tar_file_expander

    from llmtts.data.remote import open_shard

    def handler(exc: Exception) -> bool:
        if isinstance(exc, UserError):  # a URL that is missing or down past its retries
            raise exc
        skip("bad_tar")
        return True

    with open_shard(path) as stream:  # a local shard or an http(s):// / s3:// URL
        files = tar_file_expander([{"url": str(path), "stream": stream}], handler=handler)
        yield from group_by_keys(files, handler=handler)


def _segment(raw: dict, vocab, frontend, max_len: int) -> tuple[Segment | None, str | None]:
    """Raw members -> training sequence, or (None, reason) for a sample to skip."""
    try:
        meta = json.loads(raw["json"])
        codes = np.load(io.BytesIO(raw["codes.npy"]), allow_pickle=False)
    except KeyError as exc:
        return None, f"missing_{exc.args[0]}"
    except Exception:
        return None, "bad_member"
    if codes.ndim == 2 and codes.shape[1] == 1:
        codes = codes[:, 0]
    if codes.ndim != 1:
        return None, "multi_codebook_codes"
    if codes.size == 0:
        return None, "no_codes"
    if codes.min() < 0 or codes.max() >= vocab.n_audio:
        return None, "code_out_of_range"
    text = meta.get("normalized_text") if isinstance(meta, dict) else None
    if not isinstance(text, str) or not text.strip():
        return None, "missing_text"
    speaker = None
    if vocab.speakers:
        speaker = str(meta.get("speaker", ""))
        if speaker not in vocab.speakers:
            return None, "unknown_speaker"
    try:
        ids, n_prompt = training_ids(vocab, frontend, text, codes, speaker=speaker)
    except UserError:
        return None, "untokenizable_text"
    if len(ids) > max_len:
        return None, "too_long"
    return Segment(ids, n_prompt), None


@torch.no_grad()
def packed_hidden(model, segments: list[Segment], row_length: int, device, amp_dtype) -> list[np.ndarray]:
    """One float32 [T_i, d] array per segment from packed teacher-forced forwards."""
    batch = pack(segments, row_length).to(device)
    ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else torch.autocast("cpu", enabled=False)
    with ctx:
        _, hidden, _ = forward_with_hidden(model, batch.input_ids, position_ids=batch.position_ids)
    out = []
    seg = batch.segment
    for i, s in enumerate(segments):
        rows, cols = torch.nonzero(seg == i, as_tuple=True)
        states = hidden[rows[0], cols[0] + torch.arange(len(s), device=device)]
        n_audio = len(s) - s.n_prompt - 1
        out.append(states[audio_state_positions(s.n_prompt, n_audio)].float().cpu().numpy())
    return out


def dump_hidden(llm_path: str | Path, input_dir: str | Path, out_dir: str | Path, device: str = "auto",
                dtype: str = "auto", batch_tokens: int = 8192, splits: list[str] | None = None,
                progress: bool = True, hidden_format: HiddenFormat | None = None) -> dict | None:
    """Write hidden shards for every input shard of this rank; rank 0 returns the index."""
    from llmtts.data.parallel_map import check_output, map_shards
    from llmtts.llm.data import check_token_shards
    from llmtts.llm.export import load_llm

    fmt = hidden_format or HiddenFormat()
    check_output(input_dir, out_dir, "hidden")  # before the model loads
    source = check_token_shards(input_dir)
    dev = pick_device(device)
    amp = torch.bfloat16 if (dtype == "bf16" or (dtype == "auto" and dev.type == "cuda")) else None
    model, vocab, frontend = load_llm(llm_path, device=dev)
    max_len = int(model.config.max_position_embeddings)
    d = int(model.config.hidden_size)
    if batch_tokens < 8:
        raise UserError(f"--batch-tokens must be >= 8, got {batch_tokens}")

    def one_shard(in_tar: Path, writer) -> dict:
        skipped: Counter = Counter()
        pending: list[tuple[str, dict, Segment]] = []

        def flush() -> None:
            if not pending:
                return
            segs = [p[2] for p in pending]
            row = max(max(len(s) for s in segs), min(2048, batch_tokens))
            states = packed_hidden(model, segs, row, dev, amp)
            for (key, raw, seg), h in zip(pending, states):
                assert h.shape == (len(seg) - seg.n_prompt - 1, d)
                # Hidden shards as input: their old states (of any format) are replaced, not kept beside.
                members = {k: v for k, v in raw.items() if not k.startswith(("__", "hidden."))}
                members[fmt.member] = fmt.encode(h)
                writer.write(key, members)
            pending.clear()

        n_tokens = 0
        for raw in _raw_samples(in_tar, lambda r: skipped.update([r])):
            if not is_usable_key(raw.get("__key__")):  # a shard written elsewhere: skip it, keep the job
                skipped["bad_key"] += 1
                continue
            seg, reason = _segment(raw, vocab, frontend, max_len)
            if seg is None:
                skipped[reason] += 1
                continue
            if n_tokens + len(seg) > batch_tokens:
                flush()
                n_tokens = 0
            pending.append((raw["__key__"], raw, seg))
            n_tokens += len(seg)
        flush()
        if skipped:
            log.warning("%s: skipped %s", in_tar, dict(skipped))
        return dict(skipped)

    # Carry the token index's own facts (samples_per_token, sample_rate, codebook_size ...).
    own = {"version", "kind", "shards", "splits", "totals", "speakers", "rejected", "num_rejected"}
    extra = {k: v for k, v in source.items() if k not in own}
    extra.update(hidden_size=d, llm_path=str(llm_path), **fmt.index_fields())
    return map_shards(input_dir, out_dir, one_shard, kind="hidden", splits=splits, progress=progress,
                      extra_index=extra)
