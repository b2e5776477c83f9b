"""Shared plumbing for every ``llmtts <stage> train`` command, so stages don't repeat CLI code.

In a stage's ``cli.py``::

    def register(sub):
        p = sub.add_parser("train", help="train the codec")
        add_train_args(p)
        p.set_defaults(func=lambda args: run_training(args, CodecConfig, lambda cfg, args: CodecStage(cfg, args.save_dir, ...)))
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from llmtts.cli_paths import input_path, output_dir
from llmtts.config import load_config
from llmtts.distributed import process_group as pg
from llmtts.distributed.strategies import build_strategy
from llmtts.errors import UserError
from llmtts.train.run_folder import RUN_FOLDER_NAMES, check_fresh_start
from llmtts.train.stage import Stage


def add_train_args(parser: argparse.ArgumentParser, input_required: bool = False) -> None:
    input_path(parser, "--config", in_output_ok=True, default=None, help="YAML config (defaults are used for missing keys)")
    output_dir(parser, "--save-dir", legacy=RUN_FOLDER_NAMES, required=True,
               help="run directory (checkpoints, logs, export/)")
    input_path(parser, "--input-dir", required=input_required, default=None, help="input shard directory, or an http(s):// / s3:// URL of one (docs/data.md)")
    parser.add_argument("--resume", default="auto",
                        help="auto: newest complete checkpoint in --save-dir (default); none: start over; "
                             "or a checkpoint / run directory")
    parser.epilog = "Trailing key.sub=value arguments override config values, e.g. trainer.max_steps=100."
    parser.set_defaults(accepts_overrides=True)


def check_save_dir(save_dir: str | Path) -> None:
    """Found at start-up, not at the first checkpoint after hours of training: a --save-dir that is a file
    or cannot be created or written (a probe file is made and removed)."""
    from llmtts.io import ensure_writable_dir

    path = Path(save_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"--save-dir {save_dir}: exists and is not a directory")
    ensure_writable_dir(path, "--save-dir")


def run_training(args: argparse.Namespace, config_cls: type,
                 stage_factory: Callable[[Any, argparse.Namespace], Stage]) -> int:
    """Load the config, build the parallel strategy (it joins the process group when the trainer starts),
    build the stage, train.

    Returns the process exit code: 0 when done, ``REQUEUE_EXIT_CODE`` (75) when stopped by a signal.
    """
    from llmtts.train.trainer import Trainer

    cfg = load_config(config_cls, args.config, getattr(args, "overrides", None))
    from llmtts.data.remote import is_url

    input_dir = getattr(args, "input_dir", None)
    if input_dir is not None and not is_url(input_dir) and not Path(input_dir).exists():
        raise UserError(f"--input-dir {args.input_dir}: no such directory")
    check_save_dir(args.save_dir)
    check_fresh_start(Path(args.save_dir), args.resume)  # before the stage writes anything into the folder
    strategy = build_strategy(cfg.parallel)
    try:
        stage = stage_factory(cfg, args)
        result = Trainer(stage, cfg, Path(args.save_dir), resume=args.resume, strategy=strategy).fit()
        return result.exit_code
    finally:
        pg.destroy_process_group()


def main_for(config_cls: type, stage_factory: Callable[[Any, argparse.Namespace], Stage], prog: str,
             argv: list[str] | None = None) -> int:
    """A standalone ``prog train ...`` command (``python -m <module> train``), errors as one line."""
    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_train_args(sub.add_parser("train", help="train"))
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    args.overrides = extra
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_training(args, config_cls, stage_factory)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
