"""The built-in corpus: project-written sentences rendered by an offline voice, in LJSpeech layout.

    OUT/metadata.csv   id|text|normalized_text          (LJSpeech format, no header)
    OUT/speakers.csv   id|speaker                       (side file: eSpeak renders several speakers)
    OUT/wavs/ID.wav    16-bit mono WAV at the voice's rate (22,050 Hz)
    OUT/corpus.json    settings + totals; written last, so its presence means "complete"

``sentences="train"`` (default) draws from 90 % of the sentence set; ``"heldout"`` from the other 10 %
(for evaluation references that the model never heard); ``"all"`` from everything; ``"hard"`` from
``hard_sentences.txt`` (numbers, names, long sentences; evaluation only, ids ``CATEGORY_NNN``).
``text_source="generated"`` replaces the training sentences by ``num_utterances`` distinct generated ones
(``sentence_gen.py``: thousands of sentences for recipes that must generalise); the built-in held-out
sentences never occur among them.
Deterministic: the seed picks the sentences, the speaker and a speaking rate per utterance, and both
voices render reproducibly, so the same arguments give byte-identical files.
"""
from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import numpy as np

from llmtts.data.outdir import check_out_path, claim, ensure_ours
from llmtts.data.workers import task_results
from llmtts.audio import save_wav
from llmtts.io import write_json_atomic, write_text_atomic
from llmtts.data.voices import get_voice, parse_voices
from llmtts.errors import UserError
from llmtts.text.normalize import normalize_text

log = logging.getLogger(__name__)
CORPUS_VERSION = 1
PEAK = 0.9
RATE_RANGE = (0.9, 1.1)
CHUNK = 8  # utterances per task: small enough for a smooth progress bar


def load_sentences() -> list[str]:
    """The project's sentence set (``llmtts/data/sentences.txt``), in file order."""
    text = resources.files("llmtts.data").joinpath("sentences.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def load_hard_sentences() -> list[tuple[str, str]]:
    """``(category, text)`` of the harder evaluation sentences (``llmtts/data/hard_sentences.txt``: numbers,
    names, long), in file order; never part of a training corpus."""
    text = resources.files("llmtts.data").joinpath("hard_sentences.txt").read_text(encoding="utf-8")
    rows = [line.split("|", 1) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [(cat.strip(), t.strip()) for cat, t in rows]


SENTENCE_SETS = ("train", "heldout", "all", "hard")
TEXT_SOURCES = ("builtin", "generated")


def select_sentences(which: str = "train") -> list[str]:
    """Every 10th sentence is held out of the ``train`` set, so an evaluation corpus rendered from
    ``heldout`` never repeats a training sentence."""
    sentences = load_sentences()
    if which == "all":
        return sentences
    if which not in SENTENCE_SETS:
        raise UserError(f"unknown sentence set '{which}' (choose from {', '.join(SENTENCE_SETS)})")
    held = which == "heldout"
    return [s for i, s in enumerate(sentences) if (i % 10 == 9) == held]


def plan_corpus(num_utterances: int, seed: int, speakers: tuple[str, ...], sentence_set: str = "train",
                text_source: str = "builtin", rate_range: tuple[float, float] = RATE_RANGE,
                all_speakers: bool = False) -> list[dict]:
    """Which sentence, speaker and speaking rate each utterance gets (a pure function of the seed).
    ``all_speakers``: every drawn sentence is spoken by each speaker in turn (same text, every voice: what a
    test of the speaker token compares); otherwise each utterance draws one speaker."""
    if text_source not in TEXT_SOURCES:
        raise UserError(f"unknown text source '{text_source}' (choose from {', '.join(TEXT_SOURCES)})")
    if text_source == "generated":
        if sentence_set != "train":
            raise UserError("text source 'generated' makes training sentences only; use --sentences train")
        from llmtts.data.sentence_gen import generated_sentences

        sentences = generated_sentences(num_utterances, seed,
                                        exclude=load_sentences() + [t for _, t in load_hard_sentences()])
    elif sentence_set == "hard":
        return _plan_hard(num_utterances, seed, speakers, rate_range)
    else:
        sentences = select_sentences(sentence_set)
    rng = np.random.default_rng(seed)
    order: list[int] = []
    per_text = len(speakers) if all_speakers else 1
    while len(order) * per_text < num_utterances:  # more utterances than sentences: reshuffle and repeat
        order += rng.permutation(len(sentences)).tolist()
    plan = []
    for i in range(num_utterances):
        spk = speakers[i % per_text] if all_speakers else speakers[int(rng.integers(len(speakers)))]
        rate = round(float(rng.uniform(*rate_range)), 2)
        text = sentences[order[i // per_text]]
        plan.append({"id": f"utt_{i + 1:06d}", "text": text, "normalized_text": normalize_text(text),
                     "speaker": spk, "rate": rate})
    return plan


def _plan_hard(num_utterances: int, seed: int, speakers: tuple[str, ...],
               rate_range: tuple[float, float]) -> list[dict]:
    """The hard set in file order, each sentence once, id ``CATEGORY_NNN`` (``llmtts eval tts`` reports WER per
    category from it); speaker and rate drawn as for the other sets."""
    rows = load_hard_sentences()
    if num_utterances > len(rows):
        raise UserError(f"--num-utterances {num_utterances}: the hard set has {len(rows)} sentences")
    rng = np.random.default_rng(seed)
    picks = sorted(rng.permutation(len(rows))[:num_utterances].tolist())  # a sample that keeps the file order
    plan = []
    for k, i in enumerate(picks):
        category, text = rows[i]
        plan.append({"id": f"{category}_{k + 1:03d}", "text": text, "normalized_text": normalize_text(text),
                     "speaker": speakers[int(rng.integers(len(speakers)))],
                     "rate": round(float(rng.uniform(*rate_range)), 2)})
    return plan


def build_corpus(out_dir: str | Path, num_utterances: int, voice: str = "piper", seed: int = 0,
                 progress: bool = True, sentence_set: str = "train", workers: int = 1,
                 text_source: str = "builtin", rate_range: tuple[float, float] = RATE_RANGE,
                 all_speakers: bool = False) -> dict:
    """Render the corpus into ``out_dir``; returns the ``corpus.json`` content. Skips if complete.
    ``voice``: see ``voices.parse_voices`` (``piper``, ``espeak``, or a list such as ``piper,espeak:en-us+f3``)."""
    if num_utterances < 1:
        raise UserError(f"--num-utterances must be >= 1, got {num_utterances}")
    engines = dict((spk, engine) for engine, spk in parse_voices(voice))  # speaker -> the engine that renders it
    out_dir = check_out_path(out_dir)
    settings = {"version": CORPUS_VERSION, "voice": voice, "seed": seed, "num_utterances": num_utterances,
                "sentences": sentence_set}
    rate_range = (float(rate_range[0]), float(rate_range[1]))
    if not 0.25 <= rate_range[0] <= rate_range[1] <= 4.0:
        raise UserError(f"rate range must be 0.25 <= LO <= HI <= 4, got {rate_range}")
    # Only when set: corpora rendered before these options existed stay complete.
    if text_source != "builtin":
        settings["text_source"] = text_source
    if rate_range != RATE_RANGE:
        settings["rate_range"] = list(rate_range)
    if all_speakers:
        settings["all_speakers"] = True
    done = out_dir / "corpus.json"
    old = _read_corpus_json(done)
    if old is not None and all(old.get(k) == v for k, v in settings.items()):
        log.info("corpus in %s is already complete (%d utterances)", out_dir, num_utterances)
        return old
    ensure_ours(out_dir, recognised=old is not None, what="a corpus folder")
    plan = plan_corpus(num_utterances, seed, tuple(engines), sentence_set, text_source, rate_range, all_speakers)
    claim(out_dir, {"written_by": "llmtts data corpus"})
    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    if old is not None:  # ours, with other settings: re-rendered below
        done.unlink()
        _remove_stale_wavs(wav_dir, {p["id"] + ".wav" for p in plan})
    seconds, sample_rate = 0.0, 0
    bar = _bar(len(plan), progress)
    chunks = [plan[i:i + CHUNK] for i in range(0, len(plan), CHUNK)]
    tasks = [(engines, chunk, str(wav_dir)) for chunk in chunks]
    try:
        # each utterance renders independently of the others, so workers change nothing in the output
        with task_results(_render_chunk, tasks, workers) as results:
            for sr, n_samples in results:
                sample_rate = sr
                seconds += sum(n_samples) / sr
                bar.update(len(n_samples))
                bar.set_postfix_str(f"{seconds:.0f} s audio")
    finally:
        bar.close()
    # metadata.csv after the wavs and speakers.csv, corpus.json last: each marks everything before it done.
    write_text_atomic(out_dir / "speakers.csv", "".join(f"{p['id']}|{p['speaker']}\n" for p in plan))
    write_text_atomic(out_dir / "metadata.csv", "".join(f"{p['id']}|{p['text']}|{p['normalized_text']}\n" for p in plan))
    info = dict(settings, sample_rate=sample_rate, seconds=round(seconds, 3),
                speakers=sorted({p["speaker"] for p in plan}))
    write_json_atomic(done, info)
    return info


def _read_corpus_json(path: Path) -> dict | None:
    """A finished corpus's ``corpus.json``, or None (absent or not ours: then nothing here may be deleted)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "version" in info and "voice" in info else None


def _remove_stale_wavs(wav_dir: Path, keep: set[str]) -> None:
    """``utt_*.wav`` left by an earlier, larger corpus in the same place: only called when ``corpus.json``
    says that corpus was ours (the same names in someone else's folder are their files)."""
    for stale in wav_dir.glob("utt_*.wav"):
        if stale.name not in keep:
            stale.unlink()


_VOICES: dict[str, object] = {}


def _render_chunk(task: tuple[dict[str, str], list[dict], str]) -> tuple[int, list[int]]:
    """Render some utterances into wav_dir; returns (sample_rate, samples per utterance)."""
    engines, items, wav_dir = task
    lengths = []
    for item in items:
        voice = engines[item["speaker"]]
        if voice not in _VOICES:  # one engine per process (loading Piper takes ~1 s)
            _VOICES[voice] = get_voice(voice)
        synth = _VOICES[voice]
        # The voice reads the normalised text (case kept for prosody) so the audio says exactly what
        # normalized_text says, e.g. "$3.50" as "three dollars fifty cents".
        wav = synth.synthesize(normalize_text(item["text"], lowercase=False), item["speaker"], item["rate"])
        if wav.size == 0:
            raise UserError(f"voice '{voice}' produced no audio for: {item['text']!r}")
        peak = float(np.abs(wav).max())
        if peak > 0:
            wav = wav * (PEAK / peak)
        save_wav(Path(wav_dir) / (item["id"] + ".wav"), wav, synth.sample_rate)
        lengths.append(int(wav.size))
    return synth.sample_rate, lengths


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, s: str) -> None: ...
    def close(self) -> None: ...


def _bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, desc="corpus", unit="utt", dynamic_ncols=True)
