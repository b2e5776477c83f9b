"""``llmtts codec train`` and ``llmtts codec encode``."""
from __future__ import annotations

import argparse
import json

from llmtts.cli_paths import input_path, output_dir


def _train(args: argparse.Namespace) -> int:
    from llmtts.codec.config import CodecConfig
    from llmtts.codec.stage import CodecStage
    from llmtts.train.entry import run_training

    return run_training(args, CodecConfig, lambda cfg, a: CodecStage(cfg, a.save_dir, input_dir=a.input_dir))


def _encode(args: argparse.Namespace) -> int:
    from llmtts.codec.encode import encode_shards

    index = encode_shards(args.codec_path, args.input_dir, args.out, batch_size=args.batch_size,
                          device=args.device, progress=not args.no_progress)
    if index is not None:
        t = index["totals"]
        print(json.dumps({"out": args.out, "num_samples": t["num_samples"], "seconds": t["seconds"],
                          "rejected": index["rejected"]}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from llmtts.train.entry import add_train_args

    p = sub.add_parser("train", help="train the codec on audio shards",
                       description="Train the waveform codec (reconstruction, then GAN from gan.start_step).")
    add_train_args(p, input_required=True)
    p.set_defaults(func=_train)

    e = sub.add_parser("encode", help="encode audio shards into token shards",
                       description="Audio shards -> token shards (codes.npy + audio at the codec's rate, padded "
                                   "to whole tokens). Parallel over torchrun / SLURM ranks; resumable; deterministic.")
    input_path(e, "--codec-path", holds_outputs=True, required=True, help="codec run directory or its export/ directory")
    input_path(e, "--input-dir", required=True, help="audio shard directory (from `llmtts data shards`), "
                   "or an http(s):// / s3:// URL of one")
    output_dir(e, "--out", legacy=("index.json",), required=True, help="output token shard directory, or s3://BUCKET/PREFIX")
    e.add_argument("--batch-size", type=int, default=16, help="clips encoded per forward (default 16)")
    e.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if available, else cpu), cpu, cuda")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=_encode)
