"""Which command-line arguments are paths, and the output policy applied to them before any command runs.

Every argument naming a file or folder is declared here, by role: ``input_path`` (read), ``output_dir`` or
``output_file`` (written). ``llmtts.cli.main`` applies ``llmtts.io``'s output policy to every output argument of
the command being run, against every input argument of it, before the command starts: a new command that
declares its paths this way cannot forget the policy, and ``tests/test_cli_paths.py`` walks the whole argparse
tree and fails on a path-like argument declared any other way.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from llmtts.io import check_output_file, check_output_root, prepare_output_dir

ROLE = "llmtts_path"  # the attribute an argparse action carries when it was declared here


@dataclass(frozen=True)
class PathRole:
    kind: str  # "input" | "output_dir" | "output_file"
    holds_outputs: bool = False  # input: a run folder, outputs may be written inside it (never above it)
    in_output_ok: bool = False  # input: a config file the run folder keeps a copy of; it may be read from there
    recognised: tuple[str, ...] = ()  # output_dir: see llmtts.io.check_output_dir
    legacy: tuple[str, ...] = ()
    adds_only: bool = False  # output_dir: the command only adds new, uniquely named entries (never the marker rule)


def _add(parser: argparse.ArgumentParser, flags: tuple[str, ...], role: PathRole, kwargs: dict) -> argparse.Action:
    action = parser.add_argument(*flags, **kwargs)
    setattr(action, ROLE, role)
    return action


def input_path(parser, *flags: str, holds_outputs: bool = False, in_output_ok: bool = False,
               **kwargs) -> argparse.Action:
    """A file or folder the command reads. ``holds_outputs``: a model's run folder (its evaluation may go inside).
    ``in_output_ok``: a config file that may sit in the output folder (a run re-started from its saved copy: the
    command writes that folder in place, it never swaps or empties it)."""
    return _add(parser, flags, PathRole("input", holds_outputs=holds_outputs, in_output_ok=in_output_ok), kwargs)


def output_dir(parser, *flags: str, recognised: tuple[str, ...] = (), legacy: tuple[str, ...] = (),
               adds_only: bool = False, **kwargs) -> argparse.Action:
    """A folder the command writes: new, empty or ours (``llmtts.io.prepare_output_dir``). ``adds_only``: a root
    the command only adds new uniquely named folders to (SLURM job roots): checked, never required to be ours."""
    return _add(parser, flags, PathRole("output_dir", recognised=recognised, legacy=legacy, adds_only=adds_only),
                kwargs)


def output_file(parser, *flags: str, **kwargs) -> argparse.Action:
    """A file the command writes (``llmtts.io.check_output_file``)."""
    return _add(parser, flags, PathRole("output_file"), kwargs)


def leaf_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command ``args`` were parsed for."""
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            chosen = getattr(args, a.dest, None)
            if chosen in a.choices:
                return leaf_parser(a.choices[chosen], args)
    return parser


def declared(parser: argparse.ArgumentParser) -> list[tuple[argparse.Action, PathRole]]:
    return [(a, getattr(a, ROLE)) for a in parser._actions if hasattr(a, ROLE)]


def _values(args: argparse.Namespace, action: argparse.Action) -> list[str]:
    v = getattr(args, action.dest, None)
    if v is None or v == "":
        return []
    return [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]


def apply_output_policy(parser: argparse.ArgumentParser, args: argparse.Namespace, writer: str) -> list[str]:
    """Check every output argument of the command against the policy (one-line ``UserError`` on a refusal) and
    prepare its folders; returns the folders this call created (``drop_if_unused`` them after the command)."""
    paths = declared(parser)
    inputs = [v for a, r in paths if r.kind == "input" and not (r.holds_outputs or r.in_output_ok)
              for v in _values(args, a)]
    hosts = [v for a, r in paths if r.kind == "input" and r.holds_outputs for v in _values(args, a)]
    created = []
    for action, role in paths:
        flag = action.option_strings[0] if action.option_strings else action.dest
        for value in _values(args, action):
            if role.kind == "output_file":
                check_output_file(value, inputs + hosts, flag)
            elif role.adds_only:
                check_output_root(value, inputs + hosts, flag)
            elif role.kind == "output_dir":
                if prepare_output_dir(value, writer=writer, inputs=inputs, hosts=hosts, flag=flag,
                                      recognised=role.recognised, legacy=role.legacy):
                    created.append(value)
    return created
