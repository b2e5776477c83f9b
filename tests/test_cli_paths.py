"""The output policy from outside: every command that takes an output path, found by walking the argparse tree
(a new command is covered without editing this file), run against a hostile folder list — a foreign non-empty
folder, the input's parent, the input itself, a FIFO, a symlink to a foreign folder, a read-only folder. Each must
end in a one-line refusal (exit 2) with every byte of the user's files as it was."""
from __future__ import annotations

import argparse
import os
import re
import stat
from pathlib import Path

import pytest

from llmtts.cli import build_parser, main
from llmtts.cli_paths import ROLE

# Arguments whose names look like paths but are not declared as one, and why.
NOT_PATHS = {
    "--resume": "auto | none | a checkpoint: read only, and it lives in --save-dir by design",
    "--set": "NAME=PATH or KEY=VALUE pairs (eval sets, cluster-profile keys), not a plain path",
    "--model-name": "the id /v1/models lists",
    "--module": "a Python module name",
    "--from-scratch": "a switch",
    "--from": "a pipeline step's name",
    "--set-name": "a set's name",
}
# A name is path-like when its last word is one of these (so --asr-threads and --timeout are not).
PATH_WORDS = {"out", "dir", "path", "file", "config", "root", "model", "recordings", "texts", "asr", "encoder",
              "tokenizer", "cluster", "from"}
# Values for required arguments that are not paths (so argparse accepts the command line).
PLAIN = {"--text": "hello", "--stage": "recon", "--mode": "debug"}
FILE_INPUTS = ("--text-file", "--config", "--texts", "--encoder", "--api-key-file", "--cluster")


def _commands(parser: argparse.ArgumentParser, words=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield words, parser
    for a in subs:
        for name, sub in a.choices.items():
            yield from _commands(sub, (*words, name))


COMMANDS = list(_commands(build_parser()))
assert len(COMMANDS) > 15  # the walk found the tree


def _flag(action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest


def test_every_path_argument_is_declared_through_the_policy():
    undeclared = [f"llmtts {' '.join(words)} {_flag(a)}" for words, p in COMMANDS for a in p._actions
                  if not hasattr(a, ROLE) and a.dest != "help" and _flag(a) not in NOT_PATHS
                  and re.split(r"[-_]", _flag(a).lstrip("-"))[-1] in PATH_WORDS]
    assert not undeclared, f"declare these with llmtts.cli_paths (input_path/output_dir/output_file): {undeclared}"


def _outputs():
    for words, p in COMMANDS:
        for a in p._actions:
            role = getattr(a, ROLE, None)
            if role is not None and role.kind != "input":
                yield pytest.param(words, p, a, id=f"{'-'.join(words)}{_flag(a)}")


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[str(p)] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[str(p)] = ("file", p.read_bytes(), stat.S_IMODE(st.st_mode))
            else:
                out[str(p)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
    return out


def _argv(words, parser, target, out_value, home: Path) -> tuple[list[str], list[Path]]:
    """A command line for ``words`` that passes argparse: dummy inputs (user data: a folder with a file in it, or
    a file), plain values for required non-path options, ``out_value`` for ``target``; positionals last."""
    options, positionals, inputs = [], [], []
    taken_groups = set()
    for a in parser._actions:
        role = getattr(a, ROLE, None)
        flag = _flag(a)
        group = _required_group(parser, a)
        if a is target or a.dest == "help" or (group is not None and id(group) in taken_groups):
            continue
        value = None
        if role is not None and role.kind == "input" and not role.in_output_ok:
            value = home / "data" / flag.strip("-")
            if flag in FILE_INPUTS:
                value.parent.mkdir(parents=True, exist_ok=True)
                value.write_text("user data\n")
            else:
                value.mkdir(parents=True)
                (value / "precious.bin").write_bytes(b"\x00user bytes\xff")
            inputs.append(value)
        elif a.required or group is not None:
            value = PLAIN.get(flag, "x")
        if value is None:
            continue
        if group is not None:
            taken_groups.add(id(group))
        (options.extend([flag, str(value)]) if a.option_strings else positionals.append(str(value)))
    target_args = [_flag(target), str(out_value)] if target.option_strings else [str(out_value)]
    return [*words, *options, *target_args, *positionals], inputs


def _required_group(parser, action):
    return next((g for g in parser._mutually_exclusive_groups if g.required and action in g._group_actions), None)


CASES = ("foreign folder", "symlink to a foreign folder", "the input's parent", "the input itself", "a FIFO",
         "a read-only folder", "an empty read-only folder")


def _hostile(kind: str, home: Path, inputs: list[Path]) -> dict[str, Path]:
    cases = {}
    foreign = home / "user" / "photos"
    foreign.mkdir(parents=True)
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8 not ours")
    if kind != "adds_only":
        cases["foreign folder"] = foreign
        link = home / "user" / "link"
        link.symlink_to(foreign, target_is_directory=True)
        cases["symlink to a foreign folder"] = link
    if inputs:
        cases["the input's parent"] = inputs[0].parent
        cases["the input itself"] = inputs[-1]
    fifo = home / "user" / "fifo"
    os.mkfifo(fifo)
    if kind != "output_file":  # a file output writes through a FIFO or device (like `> /dev/null`): not refused
        cases["a FIFO"] = fifo
    ro = home / "user" / "readonly"
    ro.mkdir()
    (ro / "keep.txt").write_text("mine")
    ro.chmod(0o555)
    cases["a read-only folder"] = ro / "out.wav" if kind == "output_file" else ro
    if kind != "output_file":
        empty_ro = home / "user" / "empty-readonly"
        empty_ro.mkdir()
        empty_ro.chmod(0o555)
        cases["an empty read-only folder"] = empty_ro
    return cases


@pytest.mark.parametrize("words,parser,target", list(_outputs()))
def test_every_output_argument_refuses_hostile_targets_in_one_line(words, parser, target, tmp_path, capsys,
                                                                 monkeypatch):
    role = getattr(target, ROLE)
    kind = "adds_only" if role.adds_only else role.kind
    monkeypatch.chdir(tmp_path)
    tried = 0
    for case_no, case in enumerate(CASES):
        home = tmp_path / f"case{case_no}"
        argv, inputs = _argv(words, parser, target, "PLACEHOLDER", home)
        cases = _hostile(kind, home, inputs)
        if case not in cases:
            continue
        tried += 1
        value = cases[case]
        argv[argv.index("PLACEHOLDER")] = str(value)
        before = _snapshot(home)
        capsys.readouterr()
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2, f"{case}: llmtts {' '.join(argv)} -> exit {rc} ({err})"
        assert err.startswith("llmtts: error: ") and "\n" not in err, f"{case}: not one line: {err!r}"
        assert _flag(target) in err, f"{case}: refused for another reason: {err}"
        assert _snapshot(home) == before, f"{case}: the user's files changed"
    assert tried >= 3
