#!/usr/bin/env bash
# Thin entry: `llmtts launch --mode debug`. Usage: launch/debug.sh [launch options] <stage> <stage args...>
# (see docs/launch.md or `llmtts launch --help`).
exec "${PYTHON:-python}" -m llmtts.cli launch --mode debug "$@"
