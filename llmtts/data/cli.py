"""``llmtts data corpus`` and ``llmtts data shards``."""
from __future__ import annotations

import argparse

from llmtts.data.sources import FORMATS


def _corpus(args: argparse.Namespace) -> int:
    from llmtts.data.corpus import build_corpus

    info = build_corpus(args.out, args.num_utterances, voice=args.voice, seed=args.seed,
                        progress=not args.no_progress, sentence_set=args.sentences, workers=args.workers,
                        text_source=args.text_source, rate_range=tuple(args.rate_range))
    print(f"corpus: {info['num_utterances']} utterances, {info['seconds']:.1f} s of audio at "
          f"{info['sample_rate']} Hz, voice {info['voice']} -> {args.out}")
    return 0


def _shards(args: argparse.Namespace) -> int:
    from llmtts.data.ingest import IngestConfig, ingest

    cfg = IngestConfig(sample_rate=args.sample_rate, samples_per_shard=args.samples_per_shard,
                       val_fraction=args.val_fraction, seed=args.seed, workers=args.workers,
                       min_duration_s=args.min_duration, max_duration_s=args.max_duration, lang=args.lang)
    ingest(args.input_dir, args.format, args.out, cfg, progress=not args.no_progress)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "corpus", help="render the built-in English corpus (no downloads) in LJSpeech layout",
        description="Render project-written English sentences with an offline voice into OUT/metadata.csv "
                    "(id|text|normalized_text), OUT/speakers.csv (id|speaker) and OUT/wavs/*.wav. "
                    "Same arguments -> byte-identical files; an already complete corpus is kept.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num-utterances", type=int, default=200, help="number of utterances (default 200)")
    p.add_argument("--voice", choices=["piper", "espeak"], default="piper",
                   help="piper: neural en_US-joe-medium, one speaker, ~8x real time per core (default); "
                        "espeak: eSpeak NG, 6 speakers, robotic but ~50x real time")
    p.add_argument("--seed", type=int, default=0, help="picks sentences, speakers and speaking rates")
    p.add_argument("--sentences", choices=["train", "heldout", "all"], default="train",
                   help="train: 90%% of the sentence set (default); heldout: the other 10%%, never in a train "
                        "corpus (use for evaluation references); all: every sentence")
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
        description="Read LJSpeech, LibriTTS(-R) or a JSONL manifest, filter bad files (counted by reason in "
                    "index.json, listed in rejects.jsonl), resample, and write OUT/train/shard-*.tar, "
                    "OUT/val/shard-*.tar and OUT/index.json. Deterministic for a given seed.")
    s.add_argument("--input-dir", required=True,
                   help="dataset root (for --format manifest: the .jsonl file or a directory holding one)")
    s.add_argument("--format", choices=FORMATS, default="ljspeech",
                   help="ljspeech: metadata.csv + wavs/; libritts: *.wav beside *.normalized.txt; "
                        "manifest: JSON lines {audio, text, speaker}")
    s.add_argument("--out", required=True, help="shard directory to write")
    s.add_argument("--sample-rate", type=int, default=24000, help="output sample rate in Hz (default 24000)")
    s.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    s.add_argument("--samples-per-shard", type=int, default=1000, help="samples per shard (default 1000)")
    s.add_argument("--val-fraction", type=float, default=0.02, help="fraction held out for validation (default 0.02)")
    s.add_argument("--seed", type=int, default=0, help="decides the train/val split and shard order")
    s.add_argument("--min-duration", type=float, default=0.3, help="drop clips shorter than this (s)")
    s.add_argument("--max-duration", type=float, default=30.0, help="drop clips longer than this (s)")
    s.add_argument("--lang", default="en", help="text normaliser language (default en)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=_shards)
