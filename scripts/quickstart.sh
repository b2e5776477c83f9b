#!/usr/bin/env bash
# Quick start (a): set up the environment, then run the whole pipeline on the built-in tiny corpus
# (corpus -> shards -> codec -> encode -> LLM -> dump hidden -> decoder recon/gan -> synthesize -> eval -> report).
# Re-running resumes: finished steps are skipped. Extra args go to `llmtts pipeline` (e.g. --run-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/llmtts pipeline --config configs/pipeline/tiny.yaml "$@"
