#!/usr/bin/env bash
# Peak memory of `llmtts synthesize --text <100 k characters> --out x.wav` before (ci7 clone at c6d5811) and after.
T="$(cat /tmp/memtest/text.txt)"
for tree in /work/ci7 /work/main; do
  cd $tree && /usr/bin/time -v nice -n 10 $tree/.venv/bin/python -m llmtts.cli synthesize --text "$T" --out /tmp/memtest/$(basename $tree).wav \
    --llm-path /tmp/memtest/llm --decoder-path /tmp/memtest/dec --seed 1 2>&1 | grep -E "Maximum resident|Elapsed|real time" | sed "s|^|$(basename $tree): |"
done
cmp /tmp/memtest/ci7.wav /tmp/memtest/main.wav && echo "same wav bytes"
