#!/usr/bin/env bash
# Quick-start fragility: the shipped tiny pipeline with three other training seeds (codec, LLM, decoder).
set -uo pipefail
cd /work/qs3
nice -n 19 bash scripts/setup.sh > /work/qs3-setup.log 2>&1
for s in 1 2 3; do
  /usr/bin/time -v nice -n 19 .venv/bin/llmtts pipeline --config configs/pipeline/tiny.yaml --run-root runs/seed$s \
    "codec.overrides=[trainer.max_steps=200,trainer.seed=$s]" \
    "llm.overrides=[trainer.max_steps=400,inference.temperature=0,trainer.seed=$s]" \
    "decoder_recon.overrides=[trainer.max_steps=3000,trainer.log_every=250,trainer.seed=$s]" \
    "decoder_gan.overrides=[trainer.max_steps=60,trainer.seed=$s]" > /work/qs3-seed$s.log 2>&1
  echo "seed $s rc $? $(date)" >> /work/qs3-done.log
done
