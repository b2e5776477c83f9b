"""``llmtts eval codec``: PESQ / STOI / SI-SDR / mel distance / bitrate / codebook use of a trained codec."""
from __future__ import annotations

import argparse
import json

from llmtts.cli_paths import input_path, output_dir


def _run(args: argparse.Namespace) -> int:
    from llmtts.codec.evaluate import evaluate_codec

    if args.out is None:  # the default folder beside the codec goes through the same output policy as --out
        from llmtts.codec.evaluate import default_out_dir
        from llmtts.io import prepare_output_dir

        args.out = str(default_out_dir(args.codec_path))
        prepare_output_dir(args.out, writer="llmtts eval codec", inputs=[args.input_dir], hosts=[args.codec_path],
                           legacy=("codec_eval.json",))
    report = evaluate_codec(args.codec_path, args.input_dir, args.out, limit=args.limit,
                            splits=args.split or None, num_plots=args.num_plots, save_audio=args.save_audio,
                            device=args.device)
    print(json.dumps(report["summary"], indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("codec", help="measure a codec's reconstruction quality and bitrate",
                       description="Encode + decode every clip and compare: PESQ (wb), STOI, SI-SDR, mel distance, "
                                   "bitrate, tokens/s, codebook use. Writes codec_eval.json, per_clip.jsonl and "
                                   "spectrogram PNGs.")
    input_path(p, "--codec-path", holds_outputs=True, required=True, help="codec run directory or its export/ directory")
    input_path(p, "--input-dir", required=True,
                   help="audio/token shard directory, or a directory of audio files (e.g. an LJSpeech folder)")
    output_dir(p, "--out", legacy=("codec_eval.json",), default=None, help="report directory (default: RUN/eval/codec next to the codec)")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most this many clips")
    p.add_argument("--split", action="append", default=[], help="shard split(s) to use (default: all)")
    p.add_argument("--num-plots", type=int, default=4, help="spectrogram comparison PNGs to write (default 4)")
    p.add_argument("--save-audio", type=int, default=0, help="write this many reconstructions as WAV")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.set_defaults(func=_run)
