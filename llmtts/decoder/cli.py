"""``llmtts decoder train``: fit the Vocos decoder on LLM hidden states (stage recon, then gan)."""
from __future__ import annotations

import argparse
from pathlib import Path

from llmtts.cli_paths import input_path


def _factory(cfg, args):
    from llmtts.decoder.stage import DecoderStage

    return DecoderStage(cfg, Path(args.save_dir), args.input_dir)


def _run(args) -> int:
    from llmtts.decoder.config import DecoderConfig
    from llmtts.train.entry import run_training

    # Named flags become config overrides (so they land in RUN/config.yaml), before any key=value ones.
    named = []
    if args.stage:
        named.append(f"stage={args.stage}")
    if args.init_from:
        named.append(f"init_from={args.init_from}")
    if args.llm_path:
        named.append(f"llm_path={args.llm_path}")
    args.overrides = named + list(args.overrides or [])
    return run_training(args, DecoderConfig, _factory)


def register(sub: argparse._SubParsersAction) -> None:
    from llmtts.train.entry import add_train_args

    p = sub.add_parser("train", help="train the decoder (hidden states -> waveform)",
                       description="Train the Vocos decoder on LLM hidden states: --stage recon (mel + STFT losses), "
                                   "then --stage gan --init-from RECON_RUN (adds MPD/MRD discriminators).")
    add_train_args(p)
    p.add_argument("--stage", choices=["recon", "gan"], default=None, help="overrides the config's 'stage'")
    input_path(p, "--init-from", default=None, help="decoder run or export to start from (stage gan: the recon run)")
    input_path(p, "--llm-path", default=None,
                   help="on-the-fly mode: --input-dir holds token shards and this frozen LLM computes the states")
    p.set_defaults(func=_run)
