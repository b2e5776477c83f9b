#!/usr/bin/env bash
# One-GPU smoke run of the Soprano-size recipe (configs/pipeline/gpu-smoke.yaml, <= 8 min of training), then
# a summary: LLM tokens/s, MFU, peak memory per stage, WER on unseen (and training) sentences.
#   bash scripts/gpu-smoke.sh                # on a GPU machine; writes runs/gpu-smoke/ + gpu-smoke.json
#   bash scripts/gpu-smoke.sh --dry-run      # CPU wiring check (tests/test_gpu_smoke.py): same script and
#                                            # configs, a handful of steps, small batches, device=cpu
# Python: $LLMTTS_PYTHON if set (an interpreter that already has CUDA torch and this project's dependencies;
# the repository goes on PYTHONPATH), else .venv-gpu with torch 2.13.0 from PyTorch's CUDA 12.8 index.
# Extra arguments are pipeline overrides (e.g. corpus.input_dir=/data/rendered-corpus run_root=/scratch/x).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
RUN=${RUN:-runs/gpu-smoke}

if [ "$DRY" = 1 ]; then
  bash scripts/setup.sh >/dev/null
  PY=.venv/bin/python
  # Same stages and configs, CPU-sized: 2 steps each, small batches, no time limits, the soprano-80m LLM as
  # is but a narrow decoder (its 74 M-parameter GAN step alone takes a minute on CPU), 8 tokens per sentence.
  small="trainer.device=cpu,trainer.max_minutes=0,trainer.max_steps=2,trainer.eval_batches=1"
  narrow="model.dim=64,model.intermediate_dim=128,model.num_layers=2,gan.channels=4,gan.max_channels=16"
  set -- "$@" corpus.num_utterances=8 corpus.workers=1 shards.workers=1 shards.samples_per_shard=4 \
    shards.val_fraction=0.25 eval.num_utterances=2 eval.train_utterances=2 "eval.extra=[--max-tokens,8]" threads=1 \
    "codec.overrides=[parallel.strategy=none,$small,data.batch_budget=65536]" \
    "llm.overrides=[parallel.strategy=none,$small,trainer.eval_every=1,trainer.best_metric=loss_audio,vocab.tokenizer=phonemes,packing.row_length=256,data.batch_budget=256,data.num_workers=0]" \
    "decoder_recon.overrides=[parallel.strategy=none,$small,$narrow,data.batch_budget=262144]" \
    "decoder_gan.overrides=[parallel.strategy=none,$small,$narrow,data.batch_budget=262144]"
elif [ -n "${LLMTTS_PYTHON:-}" ]; then
  PY=$LLMTTS_PYTHON
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  if [ ! -x .venv-gpu/bin/python ]; then
    python3 -m venv .venv-gpu
    .venv-gpu/bin/pip install -q --upgrade pip
    .venv-gpu/bin/pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128
    .venv-gpu/bin/pip install -q -e ".[eval]"
  fi
  PY=.venv-gpu/bin/python
fi
if [ "$DRY" = 0 ]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu-smoke: torch sees no CUDA device (use --dry-run on a CPU machine)')"
  "$PY" -c "import torch; print('gpu-smoke:', torch.__version__, torch.cuda.get_device_name(0))"
fi
export WANDB_MODE=${WANDB_MODE:-disabled}
t0=$(date +%s)
"$PY" -m llmtts.cli pipeline --config configs/pipeline/gpu-smoke.yaml run_root="$RUN" "$@"
echo "gpu-smoke: pipeline wall time $(( $(date +%s) - t0 )) s"
"$PY" benchmarks/gpu_smoke_report.py "$RUN" --json "$RUN/gpu-smoke.json"
if [ "$DRY" = 0 ] && [ "${GPU_BENCHMARKS:-1}" = 1 ]; then
  # Issue 16's GPU figures (a few minutes): decoding speed at batch 1 and 32, first chunk, tokens/s; training
  # throughput and MFU of the three stages. GPU_BENCHMARKS=0 skips them.
  "$PY" benchmarks/inference.py --device cuda --dtypes fp32,bf16 --batch 32 --tokens 512 --naive-tokens 32 \
    --json "$RUN/inference-gpu.json" | tee "$RUN/inference-gpu.txt"
  "$PY" benchmarks/train_throughput.py --device cuda --json "$RUN/train-throughput-gpu.json" \
    | tee "$RUN/train-throughput-gpu.txt"
  # CUDA graphs (llmtts/infer/graphed_decode.py): replay == eager step, and batch-1 speed without them.
  "$PY" -m pip install -q "pytest>=8" >/dev/null 2>&1 || true
  # A failing test fails the script (after the last benchmark has run, so its figures are still collected).
  tests_ok=1
  "$PY" -m pytest -q -p no:cacheprovider tests/infer/test_graphed_decode.py 2>&1 | tee "$RUN/graphed-decode-tests.txt" \
    || tests_ok=0
  LLMTTS_CUDA_GRAPHS=0 "$PY" benchmarks/inference.py --device cuda --dtypes bf16 --quick --tokens 512 \
    --naive-tokens 32 --json "$RUN/inference-gpu-eager.json" | tee "$RUN/inference-gpu-eager.txt"
  if [ "$tests_ok" = 0 ]; then
    echo "gpu-smoke: graphed decode tests FAILED (see $RUN/graphed-decode-tests.txt)" >&2
    exit 1
  fi
fi
