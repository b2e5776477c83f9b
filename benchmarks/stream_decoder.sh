#!/usr/bin/env bash
# What a streaming decoder's shorter look-ahead costs in quality: train the quick start's decoder recipe
# (configs/decoder/tiny.yaml, 3000 recon + 60 GAN steps) with each given `model.conv_lookahead` (0 = causal
# convolutions, n = n frames of future per convolution) on a finished quick-start run's hidden shards, then score
# each and the run's own centred decoder side by side with the same LLM: judge WER (eval tts) and aligned
# resynthesis on the training and validation clips (eval decoder: mel distance, PESQ, STOI).
#
#   bash benchmarks/stream_decoder.sh runs/tiny runs/stream-decoder 0 1     # ~6 min per decoder on 2 CPU cores
set -euo pipefail
RUN=${1:?usage: stream_decoder.sh QUICKSTART_RUN_DIR OUT_DIR [CONV_LOOKAHEAD ...]}
OUT=${2:?usage: stream_decoder.sh QUICKSTART_RUN_DIR OUT_DIR [CONV_LOOKAHEAD ...]}
shift 2
LOOKAHEADS=("${@:-0}")
PY=${PYTHON:-python}
mkdir -p "$OUT"
cli() { "$PY" -m llmtts.cli "$@"; }
score() {  # tag decoder
  for split in train val; do
    cli eval decoder --decoder-path "$2" --input-dir "$RUN/shards/hidden" --out "$OUT/eval_decoder_${split}_$1" --split $split
  done
  cli eval tts --llm-path "$RUN/llm" --decoder-path "$2" --out "$OUT/eval_tts_$1" \
    --set train:16="$RUN/shards/audio/train" --set-name unseen --max-utterances 8 \
    --reference-dir "$RUN/eval/references" --codec-path "$RUN/codec" --speakers auto
}
for la in "${LOOKAHEADS[@]}"; do
  d="$OUT/lookahead$la"
  cli launch --mode debug decoder train --stage recon --input-dir "$RUN/shards/hidden" --save-dir "$d/decoder_recon" \
    --resume auto --config configs/decoder/tiny.yaml model.conv_lookahead=$la trainer.max_steps=3000 trainer.log_every=250
  cli launch --mode debug decoder train --stage gan --input-dir "$RUN/shards/hidden" --save-dir "$d/decoder_gan" \
    --init-from "$d/decoder_recon" --resume auto --config configs/decoder/tiny.yaml model.conv_lookahead=$la \
    trainer.max_steps=60
  score "lookahead$la" "$d/decoder_gan"
done
score centered "$RUN/decoder_gan"
