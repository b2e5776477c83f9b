"""Lean installs: the core runs inference, every extra's module is optional, and a missing one is one line."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:  # Python >= 3.11; on 3.10 the dev extra installs tomli (the same API)
    import tomllib
except ModuleNotFoundError:
    import tomli as tomllib

from llmtts.optional import _VIA, EXTRAS, MissingExtra, missing_extra, require

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _extra(name: str) -> set[str]:
    return {_norm(Requirement(r).name) for r in PROJECT["optional-dependencies"][name]}


def test_extras_table_matches_pyproject():
    names = set(PROJECT["optional-dependencies"]) - {"all", "dev"}
    for module, (dist, extras) in EXTRAS.items():
        listing = {e for e in names if _norm(dist) in _extra(e)}
        assert set(extras) == listing, f"{module}: optional.EXTRAS says {extras}, pyproject lists {dist} in {listing}"
        assert _norm(dist) not in {_norm(Requirement(r).name) for r in PROJECT["dependencies"]}, f"{dist} is core"
    (everything,) = PROJECT["optional-dependencies"]["all"]
    assert set(Requirement(everything).extras) == names, "[all] must name every extra but dev"


def test_every_require_call_names_a_listed_module_and_extra():
    calls = 0
    for path in (ROOT / "llmtts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("require", "pyplot"):
                args = [a.value for a in node.args if isinstance(a, ast.Constant)]
                args += [k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)]
                if node.func.id == "pyplot":
                    args = ["matplotlib", *args]
                module, extra = args[0], (args[2] if len(args) > 2 else None)
                top = _VIA.get(module.split(".")[0], module.split(".")[0])
                assert top in EXTRAS, f"{path}:{node.lineno}: require({module!r}) is not in optional.EXTRAS"
                if extra is not None:
                    assert extra in EXTRAS[top][1], f"{path}:{node.lineno}: [{extra}] does not list {module}"
                calls += 1
    assert calls >= 15  # the scan found the calls (a renamed helper would make this test vacuous)


def _core_only(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "tests" / "core_only.py"), *args], capture_output=True,
                          text=True, timeout=300, env=env, cwd=cwd)


def test_inference_needs_only_the_core(tmp_path):
    out = _core_only("synth", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["finite"] and result["samples"] > 0 and result["samples"] % result["samples_per_token"] == 0
    hidden = set(json.loads(out.stderr.strip().splitlines()[0])["hidden"])
    assert set(EXTRAS) <= hidden, "every extra's module was hidden (the simulation really was lean)"


def test_cli_parser_and_missing_extra_line(tmp_path):
    assert _core_only("cli", "--help").returncode == 0  # every area's subcommands register without extras
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "split": "train", "time": 0, "loss": 1.0}) + "\n")
    out = _core_only("cli", "report", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[1:] == [  # [0]: the hidden modules
        "llmtts: error: llmtts report needs 'matplotlib', which is not installed: pip install 'llm-tts-factory[eval]'"]


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pesq", None)  # import pesq -> ModuleNotFoundError, as when absent
    from llmtts.codec.evaluate import pesq_wb

    with pytest.raises(MissingExtra, match=r"PESQ needs 'pesq', .*pip install 'llm-tts-factory\[eval\]'"):
        pesq_wb(*[__import__("numpy").zeros(16000)] * 2, 16000)
    with pytest.raises(ImportError):  # still an ImportError for code that probes for a module
        require("pesq")
    with pytest.raises(KeyError):  # only listed modules: a typo is not turned into "install an extra"
        require("not_a_listed_module")


def test_an_unlisted_missing_module_is_not_hidden():
    assert missing_extra(ModuleNotFoundError("x", name="llmtts_nonexistent")) is None  # a bug: keep the traceback
    err = missing_extra(ModuleNotFoundError("x", name="botocore.config"), "s3:// shards")
    assert "[remote]" in str(err) and err.name == "botocore.config"
