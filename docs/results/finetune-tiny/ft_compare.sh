#!/bin/bash
# Recorded with the evidence: the commands behind decoders.json (docs/results.md, "Fine-tune").
# old decoder vs re-fitted decoder on the fine-tuned LLM (finetune-tiny), plus the decoders' aligned resynthesis scores
cd "$(dirname "$0")/../../.."  # the repository root (run from a clone where runs/tiny and runs/finetune-tiny exist)
export OMP_NUM_THREADS=1
mkdir -p runs/finetune-compare/ctrl
R=runs/finetune-tiny
.venv/bin/python -m llmtts.cli eval tts --llm-path $R/llm --decoder-path runs/tiny/decoder_gan --out $R/eval/tts_old_decoder \
  --set train:16=$R/shards/audio/train --set-name unseen --max-utterances 8 --reference-dir $R/eval/references > runs/finetune-compare/ft_old_tts.log 2>&1
for d in old:runs/tiny/decoder_gan refit:$R/decoder_gan; do
  name=${d%%:*}; path=${d#*:}
  for split in train val; do
    .venv/bin/python -m llmtts.cli eval decoder --decoder-path $path --input-dir $R/shards/hidden --split $split --limit 32 --out $R/eval/decoder_${name}_$split > runs/finetune-compare/ft_dec_${name}_$split.log 2>&1
  done
done
echo done > runs/finetune-compare/ft_compare.done
