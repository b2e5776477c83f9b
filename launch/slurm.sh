#!/usr/bin/env bash
# Thin entry: `llmtts launch --mode slurm`. Usage: launch/slurm.sh [launch options] <stage> <stage args...>
# (see docs/launch.md or `llmtts launch --help`).
exec "${PYTHON:-python}" -m llmtts.cli launch --mode slurm "$@"
