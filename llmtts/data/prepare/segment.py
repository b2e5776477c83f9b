"""Cutting a recording into utterances at pauses.

Speech regions come from Silero VAD as bundled with faster-whisper (an ONNX model inside the wheel: no
download). Regions are grouped into utterances by the pauses between them:
1. every pause of at least ``split_pause_s`` ends an utterance (sentence and paragraph breaks);
2. a group longer than ``max_s`` is split again at its longest inner pause, recursively, so long stretches
   of continuous speech are still cut where the speaker breathes rather than mid-word (a single region
   longer than that is split by Silero itself at its last short silence);
3. each utterance keeps a little context (``pad_s``, at most half the pause on either side), then
   ``trim_silence`` removes leading and trailing silence by frame energy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmtts.audio import resample
from llmtts.errors import UserError
from llmtts.optional import require

VAD_RATE = 16000


@dataclass
class SegmentConfig:
    min_s: float = 1.0
    max_s: float = 20.0
    split_pause_s: float = 0.5  # a pause this long always ends an utterance
    min_pause_s: float = 0.2  # shorter silences do not separate VAD regions (Silero's min_silence_duration)
    vad_threshold: float = 0.5
    pad_s: float = 0.2
    trim_db: float = 40.0  # silence = frames this far below the cut's loudest frame
    trim_margin_s: float = 0.05

    def validate(self) -> None:
        if not 0.5 <= self.min_s < self.max_s:
            raise UserError(f"--min-seconds must be >= 0.5 and below --max-seconds, got {self.min_s} / {self.max_s}")
        if self.split_pause_s < self.min_pause_s:
            raise UserError(f"--split-pause ({self.split_pause_s}) must be >= the VAD's minimum pause "
                            f"({self.min_pause_s})")


def speech_regions(wav: np.ndarray, sr: int, cfg: SegmentConfig) -> list[tuple[float, float]]:
    """Speech (start_s, end_s) in the recording, from Silero VAD on a 16 kHz copy, without padding."""
    vad = require("faster_whisper.vad", "llmtts data prepare (Silero VAD)")
    VadOptions, get_speech_timestamps = vad.VadOptions, vad.get_speech_timestamps
    audio = resample(wav, sr, VAD_RATE)
    opts = VadOptions(threshold=cfg.vad_threshold, min_silence_duration_ms=int(cfg.min_pause_s * 1000),
                      speech_pad_ms=0, min_speech_duration_ms=100,
                      # Speech with no pause of min_pause_s for longer than a cut may be: Silero splits it at
                      # its last >= 98 ms silence, so the cut stays under max_s even with its padding.
                      max_speech_duration_s=max(1.0, cfg.max_s - 2 * cfg.pad_s))
    return [(s["start"] / VAD_RATE, s["end"] / VAD_RATE) for s in get_speech_timestamps(audio, opts, VAD_RATE)]


def _split_long(group: list[tuple[float, float]], max_s: float) -> list[list[tuple[float, float]]]:
    if group[-1][1] - group[0][0] <= max_s or len(group) == 1:
        return [group]
    gaps = [group[i + 1][0] - group[i][1] for i in range(len(group) - 1)]
    k = int(np.argmax(gaps)) + 1
    return _split_long(group[:k], max_s) + _split_long(group[k:], max_s)


def group_regions(regions: list[tuple[float, float]], cfg: SegmentConfig) -> list[tuple[float, float]]:
    """Utterance spans (start_s, end_s) of speech, before padding: steps 1 and 2 of the module docstring."""
    groups: list[list[tuple[float, float]]] = []
    for r in regions:
        if groups and r[0] - groups[-1][-1][1] < cfg.split_pause_s:
            groups[-1].append(r)
        else:
            groups.append([r])
    spans = []
    for g in groups:
        spans += [(part[0][0], part[-1][1]) for part in _split_long(g, cfg.max_s)]
    return spans


def pad_spans(spans: list[tuple[float, float]], duration: float, pad_s: float) -> list[tuple[float, float]]:
    """Widen each span by ``pad_s`` without reaching past the middle of the pause to a neighbour."""
    out = []
    for i, (a, b) in enumerate(spans):
        lo = (spans[i - 1][1] + a) / 2 if i > 0 else 0.0
        hi = (b + spans[i + 1][0]) / 2 if i + 1 < len(spans) else duration
        out.append((max(lo, a - pad_s), min(hi, b + pad_s)))
    return out


def trim_silence(wav: np.ndarray, sr: int, cfg: SegmentConfig) -> tuple[int, int]:
    """(first, last+1) sample of ``wav`` without leading/trailing silence: 10 ms frames more than ``trim_db``
    below the loudest frame are silence; ``trim_margin_s`` is kept so soft onsets and releases survive."""
    hop = max(1, sr // 100)
    n = len(wav) // hop
    if n == 0:
        return 0, len(wav)
    frames = wav[: n * hop].reshape(n, hop).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(db > db.max() - cfg.trim_db)
    margin = int(cfg.trim_margin_s * sr)
    start = max(0, int(loud[0]) * hop - margin)
    end = min(len(wav), (int(loud[-1]) + 1) * hop + margin)
    return start, end
