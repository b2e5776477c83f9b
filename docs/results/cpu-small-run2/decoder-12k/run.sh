#!/bin/bash
# decoder schedule experiment on cpu-small run 2's hidden shards: recon 12000 steps (run 2: 3000) + GAN 200
set -e
cd /work/cs6
export OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
O=/work/s7/dec12k
$PY -m llmtts.cli launch --mode local --nproc-per-node 2 decoder train --stage recon --input-dir runs/cpu-small/shards/hidden --save-dir $O/decoder_recon --config configs/decoder/cpu-small.yaml trainer.max_steps=12000 trainer.eval_every=4000
$PY -m llmtts.cli launch --mode local --nproc-per-node 2 decoder train --stage gan --input-dir runs/cpu-small/shards/hidden --save-dir $O/decoder_gan --init-from $O/decoder_recon --config configs/decoder/cpu-small.yaml trainer.max_steps=200 trainer.eval_every=0
R=runs/cpu-small
PYTHONPATH=/work/main $PY -c "import sys; sys.path.insert(0,'/work/main'); from llmtts.cli import main; sys.exit(main(sys.argv[1:]))" eval tts --llm-path $R/llm/best --decoder-path $O/decoder_gan --out $O/eval --set train:16=$R/shards/audio/train --set-name unseen --max-utterances 32 --reference-dir $R/eval/references --codec-path $R/codec --speakers auto
echo DONE
