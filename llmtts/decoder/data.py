"""Decoder training data: (hidden states, aligned waveform) crops from shards.

Two sources, one batch type:

* hidden shards (``llmtts llm dump-hidden``): the states ``[T, d]`` (fp16, bf16 or int8 as the index says;
  the reader decodes them, ``llmtts.data.hidden_format``) + the flac, zero-padded to ``T * samples_per_token``
  samples;
* token shards + a frozen LLM (``--llm-path``, on-the-fly mode): the stage computes the same states with
  ``llmtts.llm.hidden.audio_hidden_states`` and rounds them as shards of ``hidden_dtype`` store them
  (``HiddenFormat.round_trip``), i.e. exactly what dump-hidden would have stored.

The reader transform picks a crop window of at most ``crop_tokens`` tokens (random in training, from the
start in evaluation); ``collate`` trims a batch to its shortest item (the reader buckets by length, so
little is lost) so audio is a dense ``[B, C * samples_per_token]`` tensor.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


# Skipped-sample reasons (the reader counts a transform's exception by its class name).
class AudioTokenMismatch(Exception):
    pass


class WrongSampleRate(Exception):
    pass


class HiddenSizeMismatch(Exception):
    pass


class NonFiniteHidden(Exception):  # a NaN/inf state would turn every weight it touches into NaN
    pass


@dataclass
class Item:
    key: str
    audio: np.ndarray  # [n * spt] float32
    start: int  # crop start in tokens
    n: int  # crop length in tokens
    hidden: np.ndarray | None = None  # [n, d] float16 (hidden mode)
    # On-the-fly mode: the whole utterance (the LLM is causal: a crop's states depend on the full prefix).
    codes: np.ndarray | None = None
    text: str = ""
    speaker: str = ""


@dataclass
class Batch:
    audio: torch.Tensor  # [B, C * spt]
    items: list[Item]
    n: int  # C: tokens per item
    hidden: torch.Tensor | None = None  # [B, C, d] float32 (hidden mode)


class CropTokens:
    """Reader transform: check a sample and cut a token-aligned crop (picklable for DataLoader workers)."""

    def __init__(self, samples_per_token: int, sample_rate: int, crop_tokens: int, hidden_size: int,
                 mode: str, seed: int, random: bool = True):
        self.spt, self.sr, self.crop, self.d = samples_per_token, sample_rate, crop_tokens, hidden_size
        self.mode, self.seed, self.random = mode, seed, random

    def _start(self, total: int, sample: dict) -> int:
        if not self.random or total <= self.crop:
            return 0
        # The reader's per-(seed, epoch, key) seed: a resumed run crops exactly like the uninterrupted one.
        rng = np.random.default_rng([self.seed, int(sample.get("__seed__", 0)), 0xDEC0])
        # Edge-biased: starts drawn from half a crop beyond either end, then clamped, so the first and the
        # last window of an utterance are each picked ~crop/2 times more often than a uniform start would.
        # Utterance edges carry states seen nowhere else (the speech-start state, the last states before
        # [stop]); with uniform crops a memorised sentence came out right except for its first words.
        half = self.crop // 2
        return int(np.clip(rng.integers(-half, total - self.crop + half + 1), 0, total - self.crop))

    def __call__(self, sample: dict) -> dict | None:
        if int(sample["sample_rate"]) != self.sr:
            raise WrongSampleRate(f"{sample['__key__']}: {sample['sample_rate']} Hz, decoder wants {self.sr}")
        audio = sample["audio"]
        if self.mode == "hidden":
            hidden = np.asarray(sample["hidden"])
            if hidden.ndim != 2 or hidden.shape[1] != self.d:
                raise HiddenSizeMismatch(f"{sample['__key__']}: hidden {hidden.shape}, decoder wants [T, {self.d}]")
            if not np.isfinite(hidden).all():
                raise NonFiniteHidden(f"{sample['__key__']}: NaN or inf in its hidden states")
            total = hidden.shape[0]
        else:
            codes = np.asarray(sample["codes"])
            total = codes.shape[0]
        if total == 0:
            return None
        if len(audio) < total * self.spt:  # shards pad to whole tokens; shorter means misaligned
            raise AudioTokenMismatch(f"{sample['__key__']}: {len(audio)} samples for {total} tokens")
        start = self._start(total, sample)
        n = min(self.crop, total)
        item = Item(key=sample["__key__"], audio=np.ascontiguousarray(audio[start * self.spt:(start + n) * self.spt]),
                    start=start, n=n)
        if self.mode == "hidden":
            item.hidden = np.ascontiguousarray(hidden[start:start + n])
        else:
            meta = sample["json"]
            item.codes, item.text, item.speaker = codes, str(meta.get("normalized_text", "")), str(meta.get("speaker", ""))
        return {"__key__": item.key, "item": item}


class ItemSamples:
    """length_fn: audio samples of the crop (the unit of ``data.batch_budget``)."""

    def __init__(self, samples_per_token: int):
        self.spt = samples_per_token

    def __call__(self, sample: dict) -> int:
        return sample["item"].n * self.spt


class HiddenCollate:
    def __init__(self, samples_per_token: int):
        self.spt = samples_per_token

    def __call__(self, samples: list[dict]) -> Batch:
        items = [s["item"] for s in samples]
        n = min(it.n for it in items)
        for it in items:  # trim from the end: the start was already random
            it.n = n
            it.audio = it.audio[: n * self.spt]
            if it.hidden is not None:
                it.hidden = it.hidden[:n]
        audio = torch.from_numpy(np.stack([it.audio for it in items]))
        hidden = None
        if items[0].hidden is not None:
            hidden = torch.from_numpy(np.stack([it.hidden for it in items])).float()
        return Batch(audio=audio, items=items, n=n, hidden=hidden)
