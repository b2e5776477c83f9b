#!/usr/bin/env bash
# The hard unseen set (issue 31) on the Zen 5 cpu-small model (docs/results/cpu-small-zen5), with this checkout's code.
set -uo pipefail
cd /work/cs9
M=/work/main/.venv/bin/llmtts
export OMP_NUM_THREADS=1
nice -n 19 $M data corpus --out /work/hard-refs --num-utterances 36 --voice piper --seed 9999 --sentences hard --workers 2 --no-progress
nice -n 19 $M eval tts --llm-path runs/cpu-small/llm/best --decoder-path runs/cpu-small/decoder_gan --out /work/hard-eval-zen5 \
  --set hard=/work/hard-refs --codec-path runs/cpu-small/codec --speakers auto
echo "rc $?"
