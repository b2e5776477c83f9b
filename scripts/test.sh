#!/usr/bin/env bash
# Quick start (b): set up the environment, then run the test suite. Extra args go to pytest.
# SLURM launcher tests need the local test cluster (`sudo bash slurm/local-cluster.sh start`);
# without it they skip with the reason (under CI=true they fail instead).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$HOME/.cache/llmtts/torch_extensions}
export WANDB_MODE=${WANDB_MODE:-disabled}
# The test models are tiny: one intra-op thread per process is several times faster than two (OpenMP
# spin-waiting), and the multi-process tests would otherwise oversubscribe the cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Lint first (seconds): undefined names and unused imports fail the run before any test does.
.venv/bin/python -m ruff check llmtts tests benchmarks
# Evidence: with LLMTTS_TEST_RESULTS=DIR (.ci/run sets it) every pytest run writes its JUnit XML there and
# timing.txt records each phase's wall time.
RESULTS=${LLMTTS_TEST_RESULTS:-}
junit() { [ -n "$RESULTS" ] && echo "--junitxml=$RESULTS/junit-$1.xml" || true; }
phase() { [ -n "$RESULTS" ] && echo "$1 $(( $(date +%s) - $2 )) s" >> "$RESULTS/timing.txt" || true; }
[ -n "$RESULTS" ] && mkdir -p "$RESULTS" && : > "$RESULTS/timing.txt"
# Kernel families below this CPU's own (an AVX-512 host also runs the AVX2 and default paths): the inference,
# quantisation and streaming tests again with PyTorch's and oneDNN's dispatch capped (tests/kernel_families.py).
# Seconds each; skipped when pytest gets arguments (a developer's selection).
if [ $# -eq 0 ]; then
  for family in $(.venv/bin/python tests/kernel_families.py); do
    t0=$(date +%s)
    echo "[test] kernel family ${family%%:*} (ATEN_CPU_CAPABILITY=${family%%:*} ONEDNN_MAX_CPU_ISA=${family##*:}): tests/infer, decoder streaming"
    ATEN_CPU_CAPABILITY=${family%%:*} ONEDNN_MAX_CPU_ISA=${family##*:} .venv/bin/python -m pytest -q -p no:cacheprovider \
      $(junit "family-${family/:/-}") tests/infer tests/decoder/test_decoder_stream.py | tail -n 1
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "[test] FAILED under kernel family ${family}" >&2; exit 1; }
    phase "kernel-family-${family}" "$t0"
  done
fi
t0=$(date +%s)
rc=0
.venv/bin/python -m pytest -q --durations=25 $(junit suite) "$@" || rc=$?
phase "suite($(.venv/bin/python -c 'import torch; print(torch.backends.cpu.get_cpu_capability())'))" "$t0"
exit $rc
