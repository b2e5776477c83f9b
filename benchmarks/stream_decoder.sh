#!/usr/bin/env bash
# What a causal (streaming) decoder costs in quality: train configs/decoder/tiny-stream.yaml on a finished quick-start
# run's hidden shards with the quick start's decoder budget (3000 recon + 60 GAN steps), then score it and the run's
# own non-causal decoder side by side with the same LLM: judge WER (eval tts) and aligned resynthesis (eval decoder:
# mel distance, PESQ, STOI on teacher-forced states).
#
#   bash benchmarks/stream_decoder.sh runs/tiny runs/stream-decoder      # ~6 min on 2 CPU cores
set -euo pipefail
RUN=${1:?usage: stream_decoder.sh QUICKSTART_RUN_DIR OUT_DIR}
OUT=${2:?usage: stream_decoder.sh QUICKSTART_RUN_DIR OUT_DIR}
PY=${PYTHON:-python}
mkdir -p "$OUT"
cli() { "$PY" -m llmtts.cli "$@"; }
cli launch --mode debug decoder train --stage recon --input-dir "$RUN/shards/hidden" --save-dir "$OUT/decoder_recon" \
  --resume auto --config configs/decoder/tiny-stream.yaml trainer.max_steps=3000 trainer.log_every=250
cli launch --mode debug decoder train --stage gan --input-dir "$RUN/shards/hidden" --save-dir "$OUT/decoder_gan" \
  --init-from "$OUT/decoder_recon" --resume auto --config configs/decoder/tiny-stream.yaml trainer.max_steps=60
for name in causal:"$OUT/decoder_gan" centered:"$RUN/decoder_gan"; do
  tag=${name%%:*}; dec=${name#*:}
  cli eval decoder --decoder-path "$dec" --input-dir "$RUN/shards/hidden" --out "$OUT/eval_decoder_$tag" --split val
  cli eval tts --llm-path "$RUN/llm" --decoder-path "$dec" --out "$OUT/eval_tts_$tag" \
    --set train:16="$RUN/shards/audio/train" --set-name unseen --max-utterances 8 \
    --reference-dir "$RUN/eval/references" --codec-path "$RUN/codec" --speakers auto
done
