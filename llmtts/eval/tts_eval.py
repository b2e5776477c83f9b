"""Judge a TTS model by ear-proxy: synthesise texts, transcribe them offline, score WER/CER.

Also measured: speed (x-real-time = seconds of audio per second of synthesis), durations, and the
share of utterances that hit the generation max-length guard (runaway generation: the model never
emitted its stop token). With reference recordings of the same texts, the judge's own WER on them is
reported beside the model's, so a model's WER reads against the judge's ceiling.

Outputs in OUT: ``tts_eval.json`` (summary + per utterance), ``synth/ID.wav``, ``ref/ID.wav`` (copies of
the references, so the report is self-contained), ``codec/ID.wav`` (references through the codec, with
``--codec-path``).
"""
from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol

import numpy as np

from llmtts.audio import load_audio, save_wav
from llmtts.errors import UserError
from llmtts.io import write_json_atomic
from llmtts.eval.wer import char_counts, word_counts, ErrorCounts

log = logging.getLogger(__name__)


@dataclass
class Utterance:
    id: str
    text: str


@dataclass
class SynthOutput:
    wav: np.ndarray
    sample_rate: int
    n_tokens: Optional[int] = None          # generated audio tokens, when the synthesiser says
    hit_max_length: Optional[bool] = None   # stopped by the max-length guard instead of the stop token


class Synthesizer(Protocol):
    def __call__(self, text: str) -> SynthOutput: ...


class Transcriber(Protocol):
    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str: ...


def read_texts(path: str | Path) -> list[Utterance]:
    """One text per line (ids ``utt_0000``...), or LJSpeech ``metadata.csv`` rows ``id|text[|normalized]``.

    A file is read as LJSpeech metadata when every non-empty line has a ``|``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--texts {path}: file not found")
    try:
        lines = [ln.rstrip("\n\r") for ln in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError:
        raise UserError(f"--texts {path}: not UTF-8 text") from None
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise UserError(f"--texts {path}: no texts in the file")
    if all("|" in ln for ln in lines):
        out = []
        for row in csv.reader(lines, delimiter="|", quoting=csv.QUOTE_NONE):
            uid, text = row[0].strip(), row[1].strip()
            if not uid or not text:
                raise UserError(f"--texts {path}: row {row!r} has an empty id or text")
            out.append(Utterance(uid, text))
    else:
        out = [Utterance(f"utt_{i:04d}", ln.strip()) for i, ln in enumerate(lines)]
    ids = [u.id for u in out]
    if len(set(ids)) != len(ids):
        raise UserError(f"--texts {path}: duplicate utterance ids")
    return out


def find_reference(reference_dir: Path, uid: str) -> Path | None:
    for cand in (reference_dir / "wavs" / f"{uid}.wav", reference_dir / f"{uid}.wav",
                 reference_dir / "wavs" / f"{uid}.flac", reference_dir / f"{uid}.flac"):
        if cand.is_file():
            return cand
    return None


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class UtteranceResult:
    id: str
    text: str
    hypothesis: str
    wer: float
    cer: float
    duration_s: float
    synth_s: float
    sample_rate: int
    n_tokens: Optional[int]
    hit_max_length: Optional[bool]
    wav: str
    ref_wav: Optional[str] = None
    ref_hypothesis: Optional[str] = None
    ref_wer: Optional[float] = None
    ref_cer: Optional[float] = None
    ref_duration_s: Optional[float] = None
    error: Optional[str] = None  # the synthesiser refused the text (scored as empty audio)


def evaluate_tts(synthesize: Synthesizer, utterances: list[Utterance], judge: Transcriber, out_dir: str | Path,
                 reference_dir: str | Path | None = None, model_info: dict | None = None,
                 reconstruct: Callable[[np.ndarray, int], tuple[np.ndarray, int]] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Synthesise, transcribe and score every utterance; write and return the summary dict."""
    out_dir = Path(out_dir)
    ref_root = Path(reference_dir) if reference_dir else None
    if ref_root is not None and not ref_root.is_dir():
        raise UserError(f"--reference-dir {ref_root}: not a directory")
    if not utterances:
        raise UserError("no utterances to evaluate")
    results: list[UtteranceResult] = []
    w_tot, c_tot, rw_tot, rc_tot = ErrorCounts(), ErrorCounts(), ErrorCounts(), ErrorCounts()
    n_ref = 0
    for i, utt in enumerate(utterances):
        t0 = time.perf_counter()
        error = None
        try:
            out = synthesize(utt.text, uid=utt.id) if getattr(synthesize, "takes_id", False) else synthesize(utt.text)
        except UserError as exc:  # e.g. a text with nothing speakable: scored as silence, not a crash
            log.warning("%s: synthesis refused: %s", utt.id, exc)
            error = str(exc)
            out = SynthOutput(np.zeros(0, dtype=np.float32), results[-1].sample_rate if results else 16000)
        synth_s = time.perf_counter() - t0
        wav = np.asarray(out.wav, dtype=np.float32).reshape(-1)
        wav_path = out_dir / "synth" / f"{utt.id}.wav"
        save_wav(wav_path, wav, out.sample_rate)
        hyp = judge.transcribe(wav, out.sample_rate)
        wc, cc = word_counts(utt.text, hyp), char_counts(utt.text, hyp)
        w_tot.add(wc)
        c_tot.add(cc)
        res = UtteranceResult(
            id=utt.id, text=utt.text, hypothesis=hyp, wer=wc.rate, cer=cc.rate,
            duration_s=wav.size / out.sample_rate, synth_s=synth_s, sample_rate=int(out.sample_rate),
            n_tokens=out.n_tokens, hit_max_length=out.hit_max_length, wav=str(wav_path.relative_to(out_dir)),
            error=error)
        if ref_root is not None:
            ref_path = find_reference(ref_root, utt.id)
            if ref_path is None:
                log.warning("no reference audio for %s in %s", utt.id, ref_root)
            else:
                ref_wav, ref_sr = load_audio(ref_path)
                ref_out = out_dir / "ref" / f"{utt.id}.wav"
                save_wav(ref_out, ref_wav, ref_sr)
                # scoring the references themselves: one transcription serves both columns
                same = getattr(synthesize, "source_dir", None) == ref_root.resolve()
                rhyp = hyp if same else judge.transcribe(ref_wav, ref_sr)
                if reconstruct is not None:  # for the report's players: reference vs codec vs synthesis
                    rec, rec_sr = reconstruct(ref_wav, ref_sr)
                    save_wav(out_dir / "codec" / f"{utt.id}.wav", rec, rec_sr)
                rwc, rcc = word_counts(utt.text, rhyp), char_counts(utt.text, rhyp)
                rw_tot.add(rwc)
                rc_tot.add(rcc)
                n_ref += 1
                res.ref_wav, res.ref_hypothesis = str(ref_out.relative_to(out_dir)), rhyp
                res.ref_wer, res.ref_cer, res.ref_duration_s = rwc.rate, rcc.rate, ref_wav.size / ref_sr
        results.append(res)
        log.info("[%d/%d] %s  wer=%.3f  %.2fs audio in %.2fs", i + 1, len(utterances), utt.id, res.wer,
                 res.duration_s, synth_s)
        if progress:
            progress(i + 1, len(utterances))

    durations = np.array([r.duration_s for r in results])
    total_audio, total_synth = float(durations.sum()), float(sum(r.synth_s for r in results))
    guard = [r.hit_max_length for r in results if r.hit_max_length is not None]
    summary = {
        "num_utterances": len(results),
        "wer": w_tot.rate,
        "cer": c_tot.rate,
        "ref_wer": rw_tot.rate if n_ref else None,
        "ref_cer": rc_tot.rate if n_ref else None,
        "num_references": n_ref,
        # recordings read from disk were not synthesised here: no speed to report
        "x_real_time": (_finite(total_audio / total_synth) if total_synth > 0 and getattr(synthesize, "timed", True)
                        else None),
        "total_audio_s": total_audio,
        "total_synth_s": total_synth,
        "duration_s": {"mean": float(durations.mean()), "min": float(durations.min()),
                       "max": float(durations.max())},
        # None when the synthesiser does not report it (e.g. an external engine).
        "max_length_share": (sum(guard) / len(guard)) if guard else None,
        "empty_audio_share": float(np.mean(durations == 0)),
        "num_errors": sum(r.error is not None for r in results),
        "asr_model": str(getattr(judge, "model_dir", "")),
        "normalisation": "llmtts.eval.wer.normalize_for_wer",
        "model": model_info or {},
    }
    report = {"summary": summary, "utterances": [asdict(r) for r in results]}
    write_json_atomic(out_dir / "tts_eval.json", report, allow_nan=False, default=_json_default)
    return report


def tts_synthesizer(llm_path: str, decoder_path: str, seed: int = 0, device: str = "cpu",
                    **options) -> tuple[Synthesizer, dict]:
    """Wrap ``llmtts.TTS`` as a Synthesizer with a fixed seed (so an evaluation is reproducible); the
    generated token count and whether a sentence hit the max-length guard come from ``tts.last_stats``."""
    from llmtts import TTS

    tts = TTS.load(llm_path, decoder_path, device=device)
    # One short untimed call first: the first forward pays one-off costs (kernel selection, lazy init) that
    # would otherwise be billed to the first utterance's x-real-time.
    tts.synthesize("Warm up.", seed=seed, max_tokens=4)

    def synth(text: str) -> SynthOutput:
        wav, sr = tts.synthesize(text, seed=seed, **options)
        stats = getattr(tts, "last_stats", None) or {}
        n_tok, runaway = stats.get("tokens"), stats.get("runaway")
        return SynthOutput(np.asarray(wav, dtype=np.float32), int(sr), None if n_tok is None else int(n_tok),
                           None if runaway is None else bool(runaway))

    return synth, {"llm_path": str(llm_path), "decoder_path": str(decoder_path), "seed": seed,
                   "sample_rate": tts.sample_rate, "samples_per_token": tts.samples_per_token}


def file_synthesizer(audio_dir: str | Path) -> Synthesizer:
    """Score existing recordings (``DIR/ID.wav`` or ``DIR/wavs/ID.wav``) as if synthesised: judge another TTS
    system's output, or the references themselves. Utterances are looked up by id, so texts need ids."""
    root = Path(audio_dir)
    if not root.is_dir():
        raise UserError(f"--audio-dir {root}: not a directory")

    def synth(text: str, uid: str | None = None) -> SynthOutput:
        path = find_reference(root, uid or "")
        if path is None:
            raise UserError(f"--audio-dir {root}: no {uid}.wav")
        wav, sr = load_audio(path)
        return SynthOutput(wav, sr)

    synth.takes_id = True  # type: ignore[attr-defined]
    synth.timed = False  # type: ignore[attr-defined]
    synth.source_dir = root.resolve()  # type: ignore[attr-defined]
    return synth


def codec_reconstructor(codec_path: str, device: str = "cpu") -> Callable[[np.ndarray, int], tuple[np.ndarray, int]]:
    """Reference audio -> codec tokens -> audio (at the codec's rate, trimmed to the input length): what the
    LLM's targets sound like, the ceiling of the whole TTS model."""
    import torch

    from llmtts.audio import resample
    from llmtts.codec.export import load_codec

    codec = load_codec(codec_path, device=device)

    @torch.inference_mode()
    def reconstruct(wav: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        x = resample(wav, sr, codec.sample_rate)
        t = torch.from_numpy(x)[None].to(device)
        y = codec.decode(codec.encode(t))[0, : x.size]
        return y.float().cpu().numpy(), codec.sample_rate

    return reconstruct
