#!/bin/bash
# Recorded with the evidence: the commands behind decoders.json (docs/results.md, "Fine-tune").
cd "$(dirname "$0")/../../.."  # the repository root (run from a clone where runs/tiny and runs/finetune-tiny exist)
export OMP_NUM_THREADS=1
mkdir -p runs/finetune-compare/ctrl
R=runs/finetune-tiny
.venv/bin/python -m llmtts.cli eval decoder --decoder-path runs/tiny/decoder_gan --input-dir runs/tiny/shards/hidden --split train --limit 32 --out runs/finetune-compare/ctrl/old_on_old > runs/finetune-compare/ctrl_old_on_old.log 2>&1
# from scratch with the re-fit's budget: 1000 recon + 60 GAN on the fine-tuned LLM's states
.venv/bin/python -m llmtts.cli decoder train --stage recon --input-dir $R/shards/hidden --save-dir runs/finetune-compare/ctrl/scratch_recon --config configs/decoder/tiny.yaml trainer.max_steps=1000 trainer.log_every=250 log.progress=false > runs/finetune-compare/ctrl_scratch_recon.log 2>&1
.venv/bin/python -m llmtts.cli decoder train --stage gan --input-dir $R/shards/hidden --save-dir runs/finetune-compare/ctrl/scratch_gan --init-from runs/finetune-compare/ctrl/scratch_recon --config configs/decoder/tiny.yaml trainer.max_steps=60 log.progress=false > runs/finetune-compare/ctrl_scratch_gan.log 2>&1
.venv/bin/python -m llmtts.cli eval decoder --decoder-path runs/finetune-compare/ctrl/scratch_gan --input-dir $R/shards/hidden --split train --limit 32 --out runs/finetune-compare/ctrl/scratch_train > runs/finetune-compare/ctrl_scratch_eval.log 2>&1
.venv/bin/python -m llmtts.cli eval tts --llm-path $R/llm --decoder-path runs/finetune-compare/ctrl/scratch_gan --out runs/finetune-compare/ctrl/scratch_tts \
  --set train:16=$R/shards/audio/train --set-name unseen --max-utterances 8 --reference-dir $R/eval/references > runs/finetune-compare/ctrl_scratch_tts.log 2>&1
echo done > runs/finetune-compare/ctrl.done
