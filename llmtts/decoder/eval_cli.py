"""``llmtts eval decoder``: resynthesis quality of a decoder on an LLM's teacher-forced hidden states."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from llmtts.cli_paths import input_path, output_dir


def _run(args: argparse.Namespace) -> int:
    from llmtts.decoder.evaluate import evaluate_decoder
    from llmtts.errors import UserError

    if Path(args.out).exists() and not Path(args.out).is_dir():  # before the decoder loads
        raise UserError(f"--out {args.out}: exists and is not a directory")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    report = evaluate_decoder(args.decoder_path, args.input_dir, args.out, splits=args.split or ["val"],
                              limit=args.limit, device=args.device)
    print(json.dumps(report["summary"], indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decoder", help="measure a decoder's resynthesis of hidden states against the recordings",
                       description="Decode every clip's teacher-forced hidden states (hidden shards from "
                                   "`llmtts llm dump-hidden`) and compare with its recording: mel distance, PESQ "
                                   "(wb), STOI, SI-SDR. Score an old and a re-fitted decoder on a fine-tuned LLM's "
                                   "states to see what the re-fit buys. Writes decoder_eval.json, per_clip.jsonl.")
    input_path(p, "--decoder-path", holds_outputs=True, required=True, help="decoder run directory or its export/ directory")
    input_path(p, "--input-dir", required=True, help="hidden shard directory (RUN/shards/hidden)")
    output_dir(p, "--out", legacy=("decoder_eval.json",), required=True, help="report directory")
    p.add_argument("--split", action="append", default=[], help="shard split(s) (default: val)")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most this many clips")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.set_defaults(func=_run)
