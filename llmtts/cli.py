"""The ``llmtts`` command. Each group's subcommands live next to the code they drive
(``llmtts/<area>/cli.py`` exposes ``register(subparsers)``); this file only wires them together,
so adding a stage never edits a central switch.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from llmtts.cli_paths import apply_output_policy, leaf_parser
from llmtts.errors import UserError
from llmtts.io import drop_if_unused
from llmtts.optional import missing_extra

# group -> (help, modules that add subcommands to it)
GROUPS: dict[str, tuple[str, list[str]]] = {
    "data": ("build the built-in corpus and WebDataset shards", ["llmtts.data.cli"]),
    "codec": ("train the audio codec and encode shards into tokens", ["llmtts.codec.cli"]),
    "llm": ("train the text->audio-token LLM and dump its hidden states", ["llmtts.llm.cli"]),
    "decoder": ("train the Vocos decoder on LLM hidden states", ["llmtts.decoder.cli"]),
    "eval": ("evaluate a codec, a decoder or a whole TTS model",
             ["llmtts.codec.eval_cli", "llmtts.decoder.eval_cli", "llmtts.eval.cli"]),
    "import": ("import another project's checkpoints (Soprano)", ["llmtts.interop.import_cli"]),
    "export": ("export to another project's runtime (Soprano)", ["llmtts.interop.export_cli"]),
}
# leaf command -> (help, module exposing configure(parser) that sets ``func``)
COMMANDS: dict[str, tuple[str, str]] = {
    "synthesize": ("text in, wav out (batched or streaming)", "llmtts.infer.cli"),
    "serve": ("OpenAI-compatible speech server: streaming, request batching, web page", "llmtts.serve.cli"),
    "launch": ("run any stage in debug / local (torchrun) / slurm (submitit) mode", "llmtts.launch.cli"),
    "pipeline": ("run every step from corpus to report, skipping finished steps", "llmtts.pipeline"),
    "report": ("render a run directory into one HTML report", "llmtts.eval.report"),
    "info": ("what a trained model holds: network, vocabulary, speakers", "llmtts.llm.info"),
}


# The extra a command's users install, named in a missing-module line when it lists the module (`llmtts eval codec`
# without vector-quantize-pytorch: install [eval], which has it, rather than the smallest extra that does, [train]).
_COMMAND_EXTRA = {"eval": "eval", "report": "eval", "prepare": "prepare", "serve": "serve", "corpus": "corpus",
                  "pipeline": "all"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmtts",
        description="llm-tts-factory: train a codec -> Qwen LLM -> Vocos decoder TTS model from scratch.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group, (help_text, modules) in GROUPS.items():
        gp = top.add_parser(group, help=help_text, description=help_text)
        sub = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
        for mod_name in modules:
            importlib.import_module(mod_name).register(sub)
        gp.set_defaults(func=lambda args, _gp=gp: (_gp.print_help(), 2)[1])
    for name, (help_text, mod_name) in COMMANDS.items():
        cp = top.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(mod_name).configure(cp)
    return parser


def quiet_hf_progress_bars() -> None:
    """Hugging Face's per-call progress bars ("Loading weights", "Writing model shards") go to stderr ahead of
    anything else, so a bad input found after the model loads printed the bar's lines before the one-line error.
    Off for the CLI (HF_HUB_DISABLE_PROGRESS_BARS=0 turns them back on); our own bars (log.progress) stay."""
    if os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1") != "1":
        return
    if "huggingface_hub" in sys.modules:  # already imported (read the variable then): switch them off now
        importlib.import_module("huggingface_hub.utils").disable_progress_bars()
    if "transformers" in sys.modules:
        importlib.import_module("transformers.utils.logging").disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quiet_hf_progress_bars()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # Commands that accept dotted config overrides (key.sub=value) receive the leftovers.
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = list(getattr(args, "overrides", None) or []) + extra
    created: list[str] = []
    try:
        # The output policy (llmtts/cli_paths.py): every declared output path is checked, and its folder made
        # and marked ours, before the command runs.
        name = " ".join(x for x in ("llmtts", args.command, getattr(args, "subcommand", None)) if x)
        created = apply_output_policy(leaf_parser(parser, args), args, writer=name)
        rc = args.func(args)
    except UserError as exc:
        print(f"llmtts: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional module imported by the command: name its extra
        sub = getattr(args, "subcommand", None) or ""
        err = missing_extra(exc, f"llmtts {args.command} {sub}".strip(), _COMMAND_EXTRA.get(sub, _COMMAND_EXTRA.get(args.command)))
        if err is None:
            raise
        print(f"llmtts: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        for folder in created:  # made by the policy and left empty (a bad input): not left behind
            drop_if_unused(folder)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
