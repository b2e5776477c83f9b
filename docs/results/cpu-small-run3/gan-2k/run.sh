#!/bin/bash
# decoder GAN-length experiment on cpu-small run 3's hidden shards and recon decoder: GAN 2000 steps (run 3: 200)
set -e
cd /work/cs7
export OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
O=/work/s8/gan2k
R=runs/cpu-small
$PY -m llmtts.cli launch --mode local --nproc-per-node 2 decoder train --stage gan --input-dir $R/shards/hidden --save-dir $O/decoder_gan --init-from $R/decoder_recon --config configs/decoder/cpu-small.yaml trainer.max_steps=2000 trainer.eval_every=500 trainer.log_every=100
PYTHONPATH=/work/main $PY -c "import sys; sys.path.insert(0,'/work/main'); from llmtts.cli import main; sys.exit(main(sys.argv[1:]))" eval tts --llm-path $R/llm/best --decoder-path $O/decoder_gan --out $O/eval --set train:16=$R/shards/audio/train --set-name unseen --max-utterances 32 --reference-dir $R/eval/references --codec-path $R/codec --speakers auto
echo DONE
