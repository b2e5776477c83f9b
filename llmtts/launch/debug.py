"""``--mode debug``: the stage in this very process (breakpoints work), no process group.

Distributed variables inherited from the shell (an ``salloc`` session, a torchrun wrapper) are
removed, and train commands get debugging defaults unless the command line sets them.
"""
from __future__ import annotations

import os
import runpy
import sys

DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
             "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
# One process without a process group, data read in the main process (pdb-friendly). Only these:
# the pipeline runs its steps in debug mode, and anything else would override the stage's YAML.
TRAIN_DEFAULTS = {"parallel.strategy": "none", "data.num_workers": "0"}


def is_train_command(argv: list[str]) -> bool:
    return "train" in argv[:2]


def with_debug_defaults(argv: list[str]) -> list[str]:
    if not is_train_command(argv):
        return list(argv)
    given = {a.split("=", 1)[0] for a in argv if "=" in a and not a.startswith("-")}
    return list(argv) + [f"{k}={v}" for k, v in TRAIN_DEFAULTS.items() if k not in given]


def run_debug(argv: list[str], module: str = "llmtts.cli") -> int:
    for var in DIST_VARS:
        os.environ.pop(var, None)
    saved = sys.argv
    sys.argv = [module, *with_debug_defaults(argv)]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:  # `sys.exit(main())` at the bottom of the entry module
        code = exc.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved
    return 0
