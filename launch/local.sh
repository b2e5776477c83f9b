#!/usr/bin/env bash
# Thin entry: `llmtts launch --mode local`. Usage: launch/local.sh [launch options] <stage> <stage args...>
# (see docs/launch.md or `llmtts launch --help`).
exec "${PYTHON:-python}" -m llmtts.cli launch --mode local "$@"
