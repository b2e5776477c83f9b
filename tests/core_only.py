"""Run a snippet as if only the core dependencies were installed: every installed package that is neither a core
dependency in pyproject.toml nor pulled in by one (the closure, through the installed metadata) is hidden from the
import system the way an absent package is (``find_spec`` returns None, so ``import x`` raises ModuleNotFoundError
and ``importlib.util.find_spec`` says "not installed", which libraries' optional imports rely on).

    python tests/core_only.py synth OUT_DIR      tiny random exports -> TTS.load -> synthesize; prints a JSON summary
    python tests/core_only.py cli ARGS...        ``llmtts ARGS...`` (its exit code)

Cheaper than a fresh venv per test run (seconds, no install, no index) and it catches what a lean install breaks
on: a module of an extra, or of a package no core dependency brings, imported on the inference path.
"""
from __future__ import annotations

import json
import re
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

try:  # Python >= 3.11; on 3.10 the dev extra installs tomli (the same API)
    import tomllib
except ModuleNotFoundError:
    import tomli as tomllib

from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def core_closure() -> set[str]:
    """pyproject's core dependencies and everything they pull in (installed metadata; markers without extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo, seen = [Requirement(r) for r in project["dependencies"]], {norm(project["name"])}
    while todo:
        req = todo.pop()
        if (req.marker is not None and not req.marker.evaluate({"extra": ""})) or norm(req.name) in seen:
            continue
        seen.add(norm(req.name))
        try:
            todo += [Requirement(r) for r in requires(req.name) or ()]
        except PackageNotFoundError:
            pass
    return seen


def hidden_modules() -> set[str]:
    """Top-level import names whose every owning distribution lies outside the core closure."""
    core = core_closure()
    return {top for top, dists in packages_distributions().items() if not any(norm(d) in core for d in dists)}



class _Hide:
    """Wraps the interpreter's finders and answers "not found" for hidden top-level names."""

    def __init__(self, finders, hidden: set[str]):
        self.finders, self.hidden = finders, hidden

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.hidden:
            return None
        for finder in self.finders:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                return spec
        return None

    def find_distributions(self, *args, **kwargs):  # importlib.metadata asks the meta path too
        for finder in self.finders:
            if hasattr(finder, "find_distributions"):
                yield from finder.find_distributions(*args, **kwargs)

    def invalidate_caches(self):
        for finder in self.finders:
            getattr(finder, "invalidate_caches", lambda: None)()


def synth(out: Path) -> None:
    import numpy as np

    sys.path.insert(0, str(HERE / "infer"))
    from infer_helpers import write_tiny_exports

    from llmtts import TTS

    tts = TTS.load(*write_tiny_exports(out))
    wav, sr = tts.synthesize("Hello there.", max_tokens=12, seed=0)
    print(json.dumps({"samples": int(wav.size), "finite": bool(np.isfinite(wav).all()), "sample_rate": sr,
                      "samples_per_token": tts.samples_per_token}))


if __name__ == "__main__":
    hidden = hidden_modules()
    print(json.dumps({"hidden": sorted(hidden)}), file=sys.stderr)
    sys.meta_path[:] = [_Hide(list(sys.meta_path), hidden)]
    sys.path.insert(0, str(ROOT))
    if sys.argv[1] == "synth":
        synth(Path(sys.argv[2]))
    else:
        from llmtts.cli import main

        sys.exit(main(sys.argv[2:]))
