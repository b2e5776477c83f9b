#!/usr/bin/env bash
# Create/refresh the project virtualenv (.venv). Idempotent: a second run only checks a stamp.
#   PYTHON=python3.11 bash scripts/setup.sh
# Installs every extra and the test tools (`.[all,dev]`: the quick start and the tests need them); an inference-only
# install is `pip install .` (README). GPU users: install your CUDA build of torch 2.13.0 into .venv first
#   (python -m venv .venv && .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128)
# and this script keeps it, because it satisfies both the pin below and pyproject's torch range.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.llmtts-installed"
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] $VENV is up to date"
  exit 0
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build on Linux.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[all,dev]"
echo "$want" > "$stamp"
echo "[setup] installed llm-tts-factory into $VENV"
