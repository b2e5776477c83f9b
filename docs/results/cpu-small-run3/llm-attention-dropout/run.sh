#!/bin/bash
# LLM regularisation experiment on cpu-small run 3's token shards: attention_dropout 0.1, everything else as run 3
# (same seed 1234, same data order); compared by validation audio loss with run 3 (2.984 at 2250) and the seed repeat.
set -e
cd /work/cs8d
export OMP_NUM_THREADS=1 PYTHONPATH=/work/cs8d
PY=/work/main/.venv/bin/python
$PY -m llmtts.cli launch --mode local --nproc-per-node 2 llm train --input-dir /work/cs7/runs/cpu-small/shards/tokens --save-dir /work/s8/drop/llm --from-scratch --config configs/llm/cpu-small.yaml --resume auto model.attention_dropout=0.1
echo DONE
