"""``llmtts codec encode``: audio shards -> token shards (schema in docs/CONVENTIONS.md).

Per sample the output shard holds
  * ``KEY.flac``: the audio resampled to the codec's rate and zero-padded on the right to
    ``n_tokens * samples_per_token`` samples, so the decoder stage reads waveforms aligned to tokens;
  * ``KEY.codes.npy``: ``int16`` (``int32`` if the codebook has more than 32767 codes), ``[T]`` for FSQ or
    ``[T, Q]`` for residual FSQ;
  * ``KEY.json``: the input metadata plus ``n_tokens, samples_per_token, num_samples`` (unpadded length at the
    codec rate) and ``sample_rate`` (the codec's).

Parallel over ranks with ``llmtts.data.parallel_map.map_shards`` (input shard i -> rank i % world; finished
shards are skipped on a re-run). Deterministic: batches are formed inside one input shard in stored order
(a window of ``4 * batch_size`` samples sorted by length), so codes do not depend on the number of ranks,
and the model masks batch padding so they do not depend on the batch either.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from llmtts.audio import encode_flac, resample
from llmtts.codec.export import load_codec
from llmtts.codec.model import CodecModel
from llmtts.data.parallel_map import check_output, dist_env, iter_shard, map_shards
from llmtts.data.shards import ShardWriter, is_usable_key
from llmtts.distributed.process_group import pick_device

log = logging.getLogger(__name__)


@torch.inference_mode()
def encode_batch(model: CodecModel, wavs: list[np.ndarray]) -> list[np.ndarray]:
    """Codes of each waveform (already at the codec's rate): ``[T_i]`` or ``[T_i, Q]`` int64 arrays."""
    device = next(model.parameters()).device
    lengths = [len(w) for w in wavs]
    batch = torch.zeros(len(wavs), max(lengths))
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = torch.from_numpy(w)
    codes = model.encode(batch.to(device), torch.tensor(lengths, device=device)).cpu().numpy()
    return [codes[i, : model.num_tokens(n)] for i, n in enumerate(lengths)]


def codes_dtype(codebook_size: int) -> np.dtype:
    return np.dtype(np.int16) if codebook_size <= np.iinfo(np.int16).max + 1 else np.dtype(np.int32)


class ShardEncoder:
    """``map_shards`` callback: encode one input shard into one output shard."""

    def __init__(self, model: CodecModel, batch_size: int = 16):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model, self.batch_size = model, batch_size
        self.dtype = codes_dtype(model.quantizer.codebook_size)

    def _prepare(self, sample: dict) -> np.ndarray:
        wav = sample["audio"]
        n = sample["json"].get("num_samples")  # re-encoding token shards: drop their padding to whole tokens
        if isinstance(n, int) and 0 < n <= len(wav):
            wav = wav[:n]
        wav = resample(wav, int(sample["sample_rate"]), self.model.sample_rate)
        if wav.size == 0 or not np.isfinite(wav).all():
            raise ValueError("empty or non-finite audio after resampling")
        return wav

    def _flush(self, window: list[tuple[dict, np.ndarray]], writer: ShardWriter) -> None:
        order = sorted(range(len(window)), key=lambda i: (len(window[i][1]), i))
        codes: dict[int, np.ndarray] = {}
        for start in range(0, len(order), self.batch_size):
            idx = order[start: start + self.batch_size]
            for i, c in zip(idx, encode_batch(self.model, [window[i][1] for i in idx])):
                codes[i] = c
        spt, sr = self.model.samples_per_token, self.model.sample_rate
        for i, (sample, wav) in enumerate(window):  # write in stored order
            t = int(codes[i].shape[0])
            padded = np.zeros(t * spt, dtype=np.float32)
            padded[: len(wav)] = wav
            meta = dict(sample["json"])
            meta.update(n_tokens=t, samples_per_token=spt, num_samples=int(len(wav)), sample_rate=sr)
            meta.setdefault("duration_s", round(len(wav) / sr, 4))
            writer.write(sample["__key__"], {"flac": encode_flac(padded, sr), "json": meta,
                                             "codes.npy": codes[i].astype(self.dtype)})

    def __call__(self, in_tar: Path, writer: ShardWriter) -> dict[str, int]:
        skipped: Counter = Counter()
        window: list[tuple[dict, np.ndarray]] = []
        for sample in iter_shard(in_tar, fields=["audio"], on_skip=lambda r: skipped.update([r])):
            if not is_usable_key(sample.get("__key__")):  # a shard written elsewhere: skip it, keep the job
                log.warning("%s: skipping sample %r (key not usable in a shard)", in_tar, sample.get("__key__"))
                skipped["bad_key"] += 1
                continue
            try:
                window.append((sample, self._prepare(sample)))
            except Exception as exc:  # one unusable clip never stops the job
                log.warning("%s: skipping sample %s (%s)", in_tar, sample.get("__key__"), exc)
                skipped["bad_audio"] += 1
                continue
            if len(window) >= 4 * self.batch_size:
                self._flush(window, writer)
                window = []
        if window:
            self._flush(window, writer)
        if skipped:
            log.warning("%s: skipped %s", in_tar, dict(skipped))
        return dict(skipped)


def encode_shards(codec_path: str | Path, input_dir: str | Path, out_dir: str | Path, *, batch_size: int = 16,
                  device: str = "auto", rank: int | None = None, world_size: int | None = None,
                  progress: bool = True) -> dict | None:
    """Encode every input shard of this rank; rank 0 returns the output ``index.json`` content."""
    check_output(input_dir, out_dir, "tokens")  # before the model loads
    if rank is None or world_size is None:
        rank, world_size = dist_env()
    model = load_codec(codec_path, pick_device(device))
    q = model.quantizer
    extra = {"sample_rate": model.sample_rate, "samples_per_token": model.samples_per_token,
             "tokens_per_second": model.tokens_per_second, "codebook_size": q.codebook_size,
             "num_codebooks": q.num_codebooks, "codes_dtype": codes_dtype(q.codebook_size).name,
             "codec": str(Path(codec_path).resolve())}
    return map_shards(input_dir, out_dir, ShardEncoder(model, batch_size), kind="tokens", extra_index=extra,
                      rank=rank, world_size=world_size, progress=progress)
