"""``llmtts llm train`` and ``llmtts llm dump-hidden``."""
from __future__ import annotations

import argparse

from llmtts.cli_paths import input_path, output_dir


def _train(args: argparse.Namespace) -> int:
    from llmtts.errors import UserError
    from llmtts.llm.config import LLMConfig
    from llmtts.train.entry import run_training

    if bool(args.from_scratch) == bool(args.init_from):
        raise UserError("choose exactly one of --from-scratch or --init-from PATH")
    # The choice is recorded in the run's config.yaml (overrides come after the YAML file).
    flags = ["from_scratch=true"] if args.from_scratch else [f"init_from={args.init_from}"]
    if args.tokenizer:
        flags.append(f"vocab.tokenizer={args.tokenizer}")
    args.overrides = flags + list(args.overrides or [])

    def factory(cfg, a):
        from llmtts.llm.stage import LLMStage

        return LLMStage(cfg, a.save_dir, a.input_dir)

    return run_training(args, LLMConfig, factory)


def _dump(args: argparse.Namespace) -> int:
    from llmtts.data.hidden_format import HiddenFormat
    from llmtts.llm.dump import dump_hidden

    dump_hidden(args.llm_path, args.input_dir, args.out, device=args.device, dtype=args.dtype,
                batch_tokens=args.batch_tokens, splits=args.splits or None,
                hidden_format=HiddenFormat(args.hidden_dtype, args.compression))
    return 0


def register(sub) -> None:
    from llmtts.data.hidden_format import COMPRESSIONS, DEFAULT_COMPRESSION, DEFAULT_DTYPE, DTYPES
    from llmtts.train.entry import add_train_args

    p = sub.add_parser("train", help="train the text -> audio-token LLM on token shards",
                       description="Train the Qwen3 LLM on token shards (from `llmtts codec encode`).")
    add_train_args(p, input_required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--from-scratch", action="store_true", help="initialise from the config's model section")
    input_path(g, "--init-from", default="", metavar="PATH",
                   help="start from a local Hugging Face Qwen3 directory (embeddings remapped to our vocabulary)")
    input_path(p, "--tokenizer", default="", metavar="PATH",
                   help="local Hugging Face tokenizer directory instead of the character tokenizer")
    p.set_defaults(func=_train)

    d = sub.add_parser("dump-hidden", help="write the LLM's hidden state for every audio token (decoder training data)",
                       description="Teacher-forced final-layer (post-norm) hidden states, one vector per audio "
                                   "token, into hidden shards. Parallel over ranks (torchrun/SLURM), resumable.")
    input_path(d, "--llm-path", holds_outputs=True, required=True, help="LLM run directory or its export/ directory")
    input_path(d, "--input-dir", required=True, help="token shard directory, or an http(s):// / s3:// URL")
    output_dir(d, "--out", legacy=("index.json",), required=True, help="output hidden shard directory, or s3://BUCKET/PREFIX")
    d.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    d.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="forward precision (auto: bf16 on GPU, fp32 on CPU); stored as --hidden-dtype either way")
    d.add_argument("--hidden-dtype", default=DEFAULT_DTYPE, choices=list(DTYPES),
                   help="storage of the states: fp16, bf16, or int8 with one fp16 scale per vector "
                        "(docs/decoder.md, 'Hidden-state shard formats'; default: %(default)s)")
    d.add_argument("--compression", default=DEFAULT_COMPRESSION, choices=list(COMPRESSIONS),
                   help="lossless compression of the stored states (zlib: stdlib, byte-shuffled; default: %(default)s)")
    d.add_argument("--batch-tokens", type=int, default=8192, help="tokens per packed forward")
    d.add_argument("--splits", nargs="*", default=None, help="only these splits (default: all)")
    d.set_defaults(func=_dump)
