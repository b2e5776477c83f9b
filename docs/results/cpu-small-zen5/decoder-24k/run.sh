#!/usr/bin/env bash
# Issue 31 lever: the cpu-small decoder trained 12000 more recon steps (warm restart from the shipped 12000-step
# recon run of the Zen 5 fresh-clone run), then the same 200 GAN steps; judged on the 32 unseen + 36 hard sentences
# beside the shipped decoder's numbers (docs/results.md section 2). Resumable: re-run the script.
set -uo pipefail
cd /work/cs9
M=/work/main/.venv/bin/llmtts
export OMP_NUM_THREADS=1
R=runs/cpu-small
O=/work/dec24
nice -n 19 $M decoder train --stage recon --config /work/main/configs/decoder/cpu-small.yaml --init-from $R/decoder_recon \
  --input-dir $R/shards/hidden --save-dir $O/recon trainer.max_steps=12000 trainer.log_every=500 || exit 1
nice -n 19 $M decoder train --stage gan --config /work/main/configs/decoder/cpu-small.yaml --init-from $O/recon \
  --input-dir $R/shards/hidden --save-dir $O/gan trainer.max_steps=200 trainer.eval_every=0 || exit 1
nice -n 19 $M eval tts --llm-path $R/llm/best --decoder-path $O/gan --out $O/eval \
  --set hard=/work/hard-refs --set-name unseen --max-utterances 32 --reference-dir $R/eval/references \
  --codec-path $R/codec --speakers auto
echo "rc $?"
