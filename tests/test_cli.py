"""`llmtts --help` is useful at every level, and bad invocations fail with one line."""
import argparse
import subprocess
import sys

from llmtts.cli import COMMANDS, GROUPS, build_parser, main


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_group_and_command_has_help():
    top = _subparsers(build_parser())
    assert set(GROUPS) | set(COMMANDS) <= set(top), f"missing: {(set(GROUPS) | set(COMMANDS)) - set(top)}"
    for name, parser in top.items():
        text = parser.format_help()
        assert parser.description and len(text) > 80, name
        if name in GROUPS:
            subs = _subparsers(parser)
            assert subs, f"group '{name}' has no subcommands"
            for sub_name, sub in subs.items():
                assert sub.format_help().count("--") >= 1, f"{name} {sub_name}: help lists no options"


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "llmtts.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "data" in out.stdout and "synthesize" in out.stdout


def test_unknown_argument_is_rejected(capsys):
    try:
        rc = main(["data", "--definitely-not-a-flag"])
    except SystemExit as exc:
        rc = exc.code
    assert rc == 2
