#!/usr/bin/env bash
# Quick start (b): set up the environment, then run the test suite. Extra args go to pytest.
# SLURM launcher tests need the local test cluster (`sudo bash slurm/local-cluster.sh start`);
# without it they skip with the reason (under CI=true they fail instead).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$HOME/.cache/llmtts/torch_extensions}
export WANDB_MODE=${WANDB_MODE:-disabled}
exec .venv/bin/python -m pytest -q --durations=25 "$@"
