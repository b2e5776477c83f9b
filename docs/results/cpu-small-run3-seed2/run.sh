#!/bin/bash
# cpu-small run 3, second training seed (session 8): run 3's corpus, shards, codec and codes (copied, steps 1-4
# marked done), then the shipped recipe from the LLM on with other training seeds (LLM, decoder).
# From a clone of main at 0978f8f in /work/cs8:
PYTHONPATH=$PWD python -m llmtts.cli pipeline --config configs/pipeline/cpu-small.yaml \
  "llm.overrides=[trainer.seed=1235,data.seed=1]" "decoder_recon.overrides=[trainer.seed=1235,data.seed=1]" \
  "decoder_gan.overrides=[trainer.max_steps=200,trainer.eval_every=0,trainer.seed=1235,data.seed=1]"
