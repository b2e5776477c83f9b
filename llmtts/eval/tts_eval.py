"""Judge a TTS model by ear-proxy: synthesise texts, transcribe them offline, score WER/CER.

Texts come in named sets scored side by side (``sets.py``): typically ``train`` (sentences the model was
trained on) and ``unseen`` (sentences it never saw), so a report tells a broken model (both bad) from one
that does not generalise (train good, unseen bad). With reference recordings of a set's texts, the judge's
own WER on them is reported beside the model's: the ceiling the model's WER reads against.

Also measured per set: speed (x-real-time = seconds of audio per second of synthesis), durations, and the
share of utterances that hit the generation max-length guard (runaway generation: the model never emitted
its stop token).

Outputs in OUT: ``tts_eval.json`` (per-set summaries + per utterance), and per set NAME: ``NAME/synth/ID.wav``,
``NAME/ref/ID.wav`` (copies of the references, so the report is self-contained), ``NAME/codec/ID.wav``
(references through the codec, with ``--codec-path``) and ``NAME/teacher_forced/ID.wav`` (the decoder on the
LLM's states for the references' own codes, with ``--codec-path`` and a model). Both are judged too: the
"where the words are lost" ladder of ``llmtts.eval.ladder``.

A multi-speaker model is judged per speaker (``speakers=[...]``): every text is said by each speaker
(``NAME/synth/SPEAKER/ID.wav``, rows carry ``speaker``), and each set's summary gains ``speakers: {SPEAKER:
summary}`` beside its overall numbers (all speakers pooled). A voice the model renders badly shows there
instead of being averaged away. The references (and the judge's ceiling) are scored once per text.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Protocol

import numpy as np

from llmtts.audio import load_audio, save_wav
from llmtts.errors import UserError
from llmtts.io import write_json_atomic
from llmtts.eval.wer import ErrorCounts, char_counts, word_counts
from llmtts.eval.wer import cer as corpus_cer, wer as corpus_wer

if TYPE_CHECKING:  # the ladder needs torch; plain scoring (e.g. --audio-dir) does not
    from llmtts.eval.ladder import ReferenceCodec

log = logging.getLogger(__name__)


@dataclass
class Utterance:
    id: str
    text: str
    speaker: str | None = None  # who speaks its reference, where known (shard json, a corpus' speakers.csv)


@dataclass
class SynthOutput:
    wav: np.ndarray
    sample_rate: int
    n_tokens: Optional[int] = None          # generated audio tokens, when the synthesiser says
    hit_max_length: Optional[bool] = None   # stopped by the max-length guard instead of the stop token


class Synthesizer(Protocol):
    def __call__(self, text: str) -> SynthOutput: ...  # per-speaker evaluation also passes speaker=NAME


class Transcriber(Protocol):
    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str: ...


@dataclass
class EvalSet:
    name: str
    utterances: list[Utterance]
    reference_dir: Path | None = None  # where ID.wav references are found; None: no ceiling for this set
    source: str = ""                   # what the set was read from, for the report


def read_texts(path: str | Path, label: str | None = None) -> list[Utterance]:
    """One text per line (ids ``utt_0000``...), or LJSpeech ``metadata.csv`` rows ``id|text[|normalized]``.

    A file is read as LJSpeech metadata when every non-empty line has a ``|``. ``label`` starts the error
    messages (default ``--texts PATH``).
    """
    path = Path(path)
    where = label or f"--texts {path}"
    if not path.is_file():
        raise UserError(f"{where}: file not found")
    try:
        lines = [ln.rstrip("\n\r") for ln in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError:
        raise UserError(f"{where}: not UTF-8 text") from None
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise UserError(f"{where}: no texts in the file")
    if all("|" in ln for ln in lines):
        out = []
        for row in csv.reader(lines, delimiter="|", quoting=csv.QUOTE_NONE):
            uid, text = row[0].strip(), row[1].strip()
            if not uid or not text:
                raise UserError(f"{where}: row {row!r} has an empty id or text")
            out.append(Utterance(uid, text))
    else:
        out = [Utterance(f"utt_{i:04d}", ln.strip()) for i, ln in enumerate(lines)]
    ids = [u.id for u in out]
    if len(set(ids)) != len(ids):
        raise UserError(f"{where}: duplicate utterance ids")
    return out


def add_reference_speakers(utts: list[Utterance], reference_dir: Path) -> list[Utterance]:
    """Who speaks each reference, from ``REFS/speakers.csv`` (``id|speaker``, written by ``llmtts data corpus``)
    where there is one: a multi-speaker evaluation then gives each speaker the ceiling of its own clips."""
    from llmtts.data.sources import read_speakers

    spk_file = Path(reference_dir) / "speakers.csv"
    if spk_file.is_file():
        who = read_speakers(spk_file)
        for u in utts:
            u.speaker = who.get(u.id, u.speaker)
    return utts


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
    set: str
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
    wav: str  # paths relative to the directory of tts_eval.json
    ref_wav: Optional[str] = None
    ref_hypothesis: Optional[str] = None
    ref_wer: Optional[float] = None
    ref_cer: Optional[float] = None
    ref_duration_s: Optional[float] = None
    codec_wav: Optional[str] = None
    codec_hypothesis: Optional[str] = None
    codec_wer: Optional[float] = None
    tf_wav: Optional[str] = None  # teacher-forced: the decoder on the LLM's states for the reference's codes
    tf_hypothesis: Optional[str] = None
    tf_wer: Optional[float] = None
    tf_tokens: Optional[int] = None
    tf_top1: Optional[float] = None  # the LLM's top-1 accuracy on the reference's codes
    tf_nll: Optional[float] = None  # their mean negative log-likelihood (nats)
    error: Optional[str] = None  # the synthesiser refused the text (scored as empty audio)
    speaker: Optional[str] = None  # the speaker asked for (per-speaker evaluation only)


class _Totals:
    """Corpus-level error counts of one set: the model's and the judge's on the references."""

    def __init__(self):
        self.w, self.c, self.rw, self.rc = ErrorCounts(), ErrorCounts(), ErrorCounts(), ErrorCounts()
        self.n_ref = 0
        # the ladder (``llmtts.eval.ladder``): codec resynthesis and teacher-forced decoding of the references
        self.cw, self.cc, self.tw, self.tc = ErrorCounts(), ErrorCounts(), ErrorCounts(), ErrorCounts()
        self.n_codec = self.n_tf = self.tf_tokens = 0
        self.tf_correct = self.tf_nll_sum = 0.0


def _synthesize_one(synthesize: Synthesizer, utt: Utterance, fallback_sr: int,
                    speaker: str | None = None) -> tuple[SynthOutput, str | None]:
    kw = {} if speaker is None else {"speaker": speaker}
    try:
        if getattr(synthesize, "takes_id", False):
            return synthesize(utt.text, uid=utt.id, **kw), None
        return synthesize(utt.text, **kw), None
    except UserError as exc:  # e.g. a text with nothing speakable: scored as silence, not a crash
        log.warning("%s: synthesis refused: %s", utt.id, exc)
        return SynthOutput(np.zeros(0, dtype=np.float32), fallback_sr), str(exc)


def _score_reference(res: UtteranceResult, utt: Utterance, ref_root: Path, set_dir: Path, out_dir: Path,
                     judge: Transcriber, totals: _Totals, same_audio: bool,
                     reconstruct: ReferenceCodec | None, teacher_force=None) -> tuple[ErrorCounts, ErrorCounts] | None:
    """The judge on the reference recording of ``utt`` (its ceiling), filled into ``res``; returns its
    (word, char) error counts, None without a reference."""
    ref_path = find_reference(ref_root, utt.id)
    if ref_path is None:
        log.warning("no reference audio for %s in %s", utt.id, ref_root)
        return None
    ref_wav, ref_sr = load_audio(ref_path)
    ref_out = set_dir / "ref" / f"{utt.id}.wav"
    if ref_path.resolve() != ref_out.resolve():  # shard references are extracted straight to ref/
        save_wav(ref_out, ref_wav, ref_sr)
    # scoring the references themselves: one transcription serves both columns
    rhyp = res.hypothesis if same_audio else judge.transcribe(ref_wav, ref_sr)
    if reconstruct is not None:  # reference vs codec vs synthesis, in the report's players and by the judge
        codes, n_samples = reconstruct.encode(ref_wav, ref_sr)  # once: the teacher-forced rung reads them too
        rec, rec_sr = reconstruct.decode(codes, n_samples)
        res.codec_wav, res.codec_hypothesis, res.codec_wer = _judge_rung(
            rec, rec_sr, set_dir / "codec" / f"{utt.id}.wav", out_dir, utt.text, judge, totals.cw, totals.cc)
        totals.n_codec += 1
    if teacher_force is not None:
        tf = teacher_force(utt.text, codes, utt.speaker)
        res.tf_wav, res.tf_hypothesis, res.tf_wer = _judge_rung(
            tf.wav, tf.sample_rate, set_dir / "teacher_forced" / f"{utt.id}.wav", out_dir, utt.text, judge,
            totals.tw, totals.tc)
        res.tf_tokens, res.tf_top1, res.tf_nll = tf.tokens, tf.top1, tf.nll
        totals.n_tf += 1
        totals.tf_tokens += tf.tokens
        totals.tf_correct += tf.top1 * tf.tokens
        totals.tf_nll_sum += tf.nll * tf.tokens
    rwc, rcc = word_counts(utt.text, rhyp), char_counts(utt.text, rhyp)
    totals.rw.add(rwc)
    totals.rc.add(rcc)
    totals.n_ref += 1
    res.ref_wav, res.ref_hypothesis = ref_out.relative_to(out_dir).as_posix(), rhyp
    res.ref_wer, res.ref_cer, res.ref_duration_s = rwc.rate, rcc.rate, ref_wav.size / ref_sr
    return rwc, rcc


def _judge_rung(wav: np.ndarray, sr: int, path: Path, out_dir: Path, text: str, judge: Transcriber,
                words: ErrorCounts, chars: ErrorCounts) -> tuple[str, str, float]:
    """Save one rendition of a reference and judge it: (wav path relative to OUT, transcript, WER); its error
    counts are added to ``words`` / ``chars`` (the set's corpus-level rates)."""
    save_wav(path, wav, sr)
    hyp = judge.transcribe(wav, sr)
    wc = word_counts(text, hyp)
    words.add(wc)
    chars.add(char_counts(text, hyp))
    return path.relative_to(out_dir).as_posix(), hyp, wc.rate


def speaker_dirs(speakers: list[str]) -> dict[str, str]:
    """A folder name per speaker: ``en-us+f3`` stays as it is, other characters become ``_`` (a name never
    climbs out of OUT), and two names that would share a folder get distinct ones."""
    out: dict[str, str] = {}
    for name in speakers:
        d = re.sub(r"[^A-Za-z0-9_+-]", "_", name) or "_"
        while d in out.values():
            d += "_"
        out[name] = d
    return out


_REF_FIELDS = ("ref_wav", "ref_hypothesis", "ref_wer", "ref_cer", "ref_duration_s", "codec_wav", "codec_hypothesis",
               "codec_wer", "tf_wav", "tf_hypothesis", "tf_wer", "tf_tokens", "tf_top1", "tf_nll")


def _synth_row(synthesize: Synthesizer, utt: Utterance, speaker: str | None, synth_dir: Path, out_dir: Path,
               judge: Transcriber, set_name: str, fallback_sr: int) -> tuple[UtteranceResult, ErrorCounts, ErrorCounts]:
    """Synthesise ``utt`` (as ``speaker``), save it under ``synth_dir`` and score the judge's transcript."""
    t0 = time.perf_counter()
    out, error = _synthesize_one(synthesize, utt, fallback_sr, speaker)
    synth_s = time.perf_counter() - t0
    wav = np.asarray(out.wav, dtype=np.float32).reshape(-1)
    wav_path = synth_dir / f"{utt.id}.wav"
    save_wav(wav_path, wav, out.sample_rate)
    hyp = judge.transcribe(wav, out.sample_rate)
    wc, cc = word_counts(utt.text, hyp), char_counts(utt.text, hyp)
    res = UtteranceResult(
        set=set_name, id=utt.id, text=utt.text, hypothesis=hyp, wer=wc.rate, cer=cc.rate,
        duration_s=wav.size / out.sample_rate, synth_s=synth_s, sample_rate=int(out.sample_rate),
        n_tokens=out.n_tokens, hit_max_length=out.hit_max_length,
        wav=wav_path.relative_to(out_dir).as_posix(), error=error, speaker=speaker)
    return res, wc, cc


def score_set(synthesize: Synthesizer, eval_set: EvalSet, judge: Transcriber, out_dir: str | Path,
              reconstruct: ReferenceCodec | None = None,
              progress: Callable[[int, int], None] | None = None,
              speakers: list[str] | None = None, teacher_force=None) -> tuple[dict, list[dict]]:
    """Synthesise, transcribe and score one set; wavs go to ``OUT/NAME/``. Returns (summary, rows).
    ``reconstruct`` / ``teacher_force``: the ladder's renditions of each reference (``llmtts.eval.ladder``).
    ``speakers``: every text is said by each of them (``synthesize(text, speaker=NAME)``); the summary then
    holds ``speakers: {NAME: summary}`` beside the overall numbers, which pool all speakers."""
    out_dir = Path(out_dir)
    set_dir = out_dir / eval_set.name
    ref_root = Path(eval_set.reference_dir) if eval_set.reference_dir else None
    if ref_root is not None and not ref_root.is_dir():
        raise UserError(f"set {eval_set.name}: reference directory {ref_root} not found")
    if not eval_set.utterances:
        raise UserError(f"set {eval_set.name}: no utterances to evaluate")
    same_audio = ref_root is not None and getattr(synthesize, "source_dir", None) == ref_root.resolve()
    voices: dict[str | None, str] = speaker_dirs(list(speakers)) if speakers else {None: ""}
    results: list[UtteranceResult] = []
    totals = _Totals()
    per_voice = {v: ([], _Totals()) for v in voices}
    n = len(eval_set.utterances) * len(voices)
    for utt in eval_set.utterances:
        first = None  # the text's first row: its reference is scored once, whatever the number of speakers
        for voice, sub in voices.items():
            res, wc, cc = _synth_row(synthesize, utt, voice, set_dir / "synth" / sub, out_dir, judge, eval_set.name,
                                     results[-1].sample_rate if results else 16000)
            for t in (totals, per_voice[voice][1]):
                t.w.add(wc)
                t.c.add(cc)
            per_voice[voice][0].append(res)
            if first is not None:
                for f in _REF_FIELDS:
                    setattr(res, f, getattr(first, f))
            elif ref_root is not None:
                ref = _score_reference(res, utt, ref_root, set_dir, out_dir, judge, totals, same_audio, reconstruct,
                                       teacher_force)
                if ref is not None and utt.speaker in per_voice and speakers:  # a speaker's ceiling: its own clips
                    own = per_voice[utt.speaker][1]
                    own.rw.add(ref[0])
                    own.rc.add(ref[1])
                    own.n_ref += 1
            if first is None:
                first = res
            results.append(res)
            log.info("[%s %d/%d] %s%s  wer=%.3f  %.2fs audio in %.2fs", eval_set.name, len(results), n, utt.id,
                     f" ({voice})" if voice else "", res.wer, res.duration_s, res.synth_s)
            if progress:
                progress(len(results), n)
    timed = getattr(synthesize, "timed", True)
    summary = _set_summary(eval_set, results, totals, timed, set_dir.relative_to(out_dir).as_posix())
    if speakers:
        summary["speakers"] = {v: _speaker_summary(eval_set, rs, t, timed, f"{summary['synth_dir']}/{voices[v]}")
                               for v, (rs, t) in per_voice.items()}
    if (by_category := category_summary(results)) is not None:
        summary["categories"] = by_category
    return summary, [asdict(r) for r in results]


_CATEGORY_ID = re.compile(r"^(?P<cat>[a-z]+)_\d+$")


def category_summary(results: list[UtteranceResult]) -> dict | None:
    """WER / CER per category when the utterance ids say it (``CATEGORY_NNN``, as ``data corpus --sentences
    hard`` writes them) and there are at least two; corpus-level rates, the ceiling from the references' rows."""
    cats = [m["cat"] if (m := _CATEGORY_ID.match(r.id)) else None for r in results]
    if None in cats or len(set(cats)) < 2:
        return None
    out = {}
    for cat in dict.fromkeys(cats):
        rows = [r for r, c in zip(results, cats) if c == cat]
        refs = [r for r in rows if r.ref_hypothesis is not None]
        out[cat] = {"num_utterances": len(rows),
                    "wer": corpus_wer([r.text for r in rows], [r.hypothesis for r in rows]),
                    "cer": corpus_cer([r.text for r in rows], [r.hypothesis for r in rows]),
                    "ref_wer": corpus_wer([r.text for r in refs], [r.ref_hypothesis for r in refs]) if refs else None}
    return out


def _speaker_summary(eval_set: EvalSet, results: list[UtteranceResult], t: _Totals, timed: bool,
                     synth_dir: str) -> dict:
    """One speaker's share of a set. Its ceiling (``ref_wer``): the judge on the references that speaker recorded
    (null when the set does not say who speaks its references)."""
    s = _set_summary(eval_set, results, t, timed, "")
    for k in ("source", "ref_dir", *(k for k in s if k.startswith(("codec_", "teacher_forced_")))):
        del s[k]  # the ladder renders each reference once, as its own speaker: it is in the set's summary
    s["synth_dir"] = synth_dir
    return s


def _set_summary(eval_set: EvalSet, results: list[UtteranceResult], t: _Totals, timed: bool, set_dir: str) -> dict:
    """``set_dir``: the set's folder relative to OUT (``NAME``)."""
    durations = np.array([r.duration_s for r in results])
    total_audio, total_synth = float(durations.sum()), float(sum(r.synth_s for r in results))
    guard = [r.hit_max_length for r in results if r.hit_max_length is not None]
    return {
        "num_utterances": len(results),
        "wer": t.w.rate,
        "cer": t.c.rate,
        # the ceiling: the same judge on the reference recordings of the same texts
        "ref_wer": t.rw.rate if t.n_ref else None,
        "ref_cer": t.rc.rate if t.n_ref else None,
        "num_references": t.n_ref,
        # recordings read from disk were not synthesised here: no speed to report
        "x_real_time": _finite(total_audio / total_synth) if total_synth > 0 and timed else None,
        "total_audio_s": total_audio,
        "total_synth_s": total_synth,
        "duration_s": {"mean": float(durations.mean()), "min": float(durations.min()),
                       "max": float(durations.max())},
        # None when the synthesiser does not report it (e.g. an external engine).
        "max_length_share": (sum(guard) / len(guard)) if guard else None,
        "empty_audio_share": float(np.mean(durations == 0)),
        "num_errors": sum(r.error is not None for r in results),
        "source": eval_set.source,
        "synth_dir": f"{set_dir}/synth",
        "ref_dir": f"{set_dir}/ref" if t.n_ref else None,
        # the ladder (llmtts.eval.ladder): the references through the codec, and the decoder on the LLM's
        # teacher-forced states for their codes (token-weighted top-1 / NLL of the LLM on those codes)
        "codec_wer": t.cw.rate if t.n_codec else None,
        "codec_cer": t.cc.rate if t.n_codec else None,
        "teacher_forced_wer": t.tw.rate if t.n_tf else None,
        "teacher_forced_cer": t.tc.rate if t.n_tf else None,
        "teacher_forced_top1": t.tf_correct / t.tf_tokens if t.tf_tokens else None,
        "teacher_forced_nll": t.tf_nll_sum / t.tf_tokens if t.tf_tokens else None,
    }


def evaluate_sets(synth_for: Callable[[EvalSet], Synthesizer], sets: list[EvalSet], judge: Transcriber,
                  out_dir: str | Path, model_info: dict | None = None,
                  reconstruct: ReferenceCodec | None = None,
                  progress: Callable[[int, int], None] | None = None, speakers: list[str] | None = None,
                  teacher_force=None) -> dict:
    """Score every set (``synth_for(set)`` gives its synthesiser); write and return ``tts_eval.json``:
    ``{"version": 2, "sets": {NAME: summary}, "utterances": [row with "set": NAME ...], ...}``.
    ``speakers``: judge each of them on every set (``score_set``); listed as ``"speakers"`` ([] if none)."""
    out_dir = Path(out_dir)
    names = [s.name for s in sets]
    if not sets or len(set(names)) != len(names):
        raise UserError(f"evaluation sets must be given and have distinct names, got {names}")
    summaries, rows = {}, []
    for s in sets:
        summaries[s.name], set_rows = score_set(synth_for(s), s, judge, out_dir, reconstruct, progress, speakers,
                                                teacher_force)
        rows.extend(set_rows)
    report = {
        "version": 2,
        "sets": summaries,
        "asr_model": str(getattr(judge, "model_dir", "")),
        "normalisation": "llmtts.eval.wer.normalize_for_wer",
        "model": model_info or {},
        "speakers": list(speakers or []),
        "utterances": rows,
    }
    write_json_atomic(out_dir / "tts_eval.json", report, allow_nan=False, default=_json_default)
    return report


def evaluate_tts(synthesize: Synthesizer, utterances: list[Utterance], judge: Transcriber, out_dir: str | Path,
                 reference_dir: str | Path | None = None, model_info: dict | None = None,
                 reconstruct: ReferenceCodec | None = None,
                 progress: Callable[[int, int], None] | None = None, name: str = "eval",
                 speakers: list[str] | None = None) -> dict:
    """One set: ``evaluate_sets`` for ``EvalSet(name, utterances, reference_dir)``."""
    ref = Path(reference_dir) if reference_dir else None
    if ref is not None and not ref.is_dir():
        raise UserError(f"--reference-dir {ref}: not a directory")
    eval_set = EvalSet(name, list(utterances), ref, str(ref or ""))
    return evaluate_sets(lambda s: synthesize, [eval_set], judge, out_dir, model_info, reconstruct, progress,
                         speakers)


def _rate(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def summary_lines(report_path: str | Path) -> list[str]:
    """One line per set of a ``tts_eval.json``: model WER against the judge's ceiling, runaway share, and
    where the wavs are; ``[]`` when the file is missing or unreadable (e.g. the evaluation was skipped)."""
    path = Path(report_path)
    try:
        data = json.loads(path.read_text())
        sets = data["sets"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    lines = []
    for name, s in sets.items():
        refs = f", references {path.parent / s['ref_dir']}" if s.get("ref_dir") else ""
        runaway = s.get("max_length_share")
        lines.append(f"WER {name} {_rate(s.get('wer'))} (ceiling {_rate(s.get('ref_wer'))}), "
                     f"{s.get('num_utterances')} utterances"
                     + (f", runaway {runaway:.0%}" if runaway is not None else "")
                     + f": wavs {path.parent / s.get('synth_dir', name + '/synth')}{refs}")
        if s.get("codec_wer") is not None or s.get("teacher_forced_wer") is not None:
            top1 = s.get("teacher_forced_top1")
            lines.append(f"  where the words go ({name}): references {_rate(s.get('ref_wer'))}, through the codec "
                         f"{_rate(s.get('codec_wer'))}, decoder on teacher-forced states "
                         f"{_rate(s.get('teacher_forced_wer'))}"
                         + (f" (LLM top-1 {top1:.3f} on their codes)" if top1 is not None else "")
                         + f", generated {_rate(s.get('wer'))}")
        for cat, v in (s.get("categories") or {}).items():
            lines.append(f"  WER {name} {cat} {_rate(v.get('wer'))} (ceiling {_rate(v.get('ref_wer'))}), "
                         f"CER {_rate(v.get('cer'))}, {v.get('num_utterances')} utterances")
        for spk, v in (s.get("speakers") or {}).items():
            lines.append(f"  WER {name} {spk} {_rate(v.get('wer'))} (ceiling {_rate(v.get('ref_wer'))}), "
                         f"CER {_rate(v.get('cer'))}, "
                         f"{v.get('num_utterances')} utterances: wavs {path.parent / v.get('synth_dir', '')}")
    return lines


def resolve_speakers(named: list[str], mode: str | None, available: list[str]) -> list[str] | None:
    """The speakers ``eval tts`` judges: ``--speaker NAME`` (repeatable, in that order), ``--speakers all`` (every
    speaker of the model) or ``auto`` (all of them when the model has more than one: what the pipeline passes).
    None: no per-speaker evaluation (the model's default voice)."""
    if named and mode:
        raise UserError("give --speaker NAME (repeatable) or --speakers all|auto, not both")
    if mode not in (None, "all", "auto"):
        raise UserError(f"--speakers {mode!r}: expected 'all' or 'auto' (or name them with --speaker NAME)")
    known = ", ".join(available) if available else "none (a single-speaker model)"
    for name in named:
        if name not in available:
            raise UserError(f"unknown speaker {name!r}; this model's speakers: {known}")
    dup = sorted({n for n in named if named.count(n) > 1})
    if dup:
        raise UserError(f"--speaker {dup[0]} given twice")
    if mode == "all" and not available:
        raise UserError("--speakers all: this model has no speakers (a single-speaker model); drop the flag")
    if mode == "all" or (mode == "auto" and len(available) > 1):
        return list(available)
    return list(named) or None


def tts_synthesizer(llm_path: str, decoder_path: str, seed: int = 0, device: str = "cpu", dtype: str = "fp32",
                    **options) -> tuple[Synthesizer, dict]:
    """Wrap ``llmtts.TTS`` as a Synthesizer with a fixed seed (so an evaluation is reproducible); the
    generated token count and whether a sentence hit the max-length guard come from ``tts.last_stats``.
    ``options`` (sampling, max_tokens ...) override the export's inference defaults; the info dict records
    the options in effect. ``dtype``: the LLM's weight format (``TTS.load``; to measure what int8/int4 cost)."""
    from llmtts import TTS

    tts = TTS.load(llm_path, decoder_path, device=device, dtype=dtype)
    used = tts.resolve_options(seed=seed, **options)  # fails on bad options before any synthesis
    # One short untimed call first: the first forward pays one-off costs (kernel selection, lazy init) that
    # would otherwise be billed to the first utterance's x-real-time.
    tts.synthesize("Warm up.", seed=seed, max_tokens=4)

    def synth(text: str, speaker: str | None = None) -> SynthOutput:
        wav, sr = tts.synthesize(text, seed=seed, **options, **({} if speaker is None else {"speaker": speaker}))
        stats = getattr(tts, "last_stats", None) or {}
        n_tok, runaway = stats.get("tokens"), stats.get("runaway")
        return SynthOutput(np.asarray(wav, dtype=np.float32), int(sr), None if n_tok is None else int(n_tok),
                           None if runaway is None else bool(runaway))

    synth.tts = tts  # type: ignore[attr-defined]  # the ladder's teacher-forced pass uses the same model
    return synth, {"llm_path": str(llm_path), "decoder_path": str(decoder_path), "seed": seed, "dtype": dtype,
                   "sample_rate": tts.sample_rate, "samples_per_token": tts.samples_per_token,
                   "sampling": asdict(used.sampling), "max_tokens": used.max_tokens,
                   "tokens_per_text_id": used.tokens_per_text_id}


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
