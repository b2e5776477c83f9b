#!/usr/bin/env bash
# Evidence for the README's test count and CI time: run `.ci/run` on a fresh clone of HEAD (what CI does) and keep
# its JUnit XML, phase timings and closing lines in docs/results/ci/<sha>/ (commit that folder).
#   bash scripts/ci-evidence.sh            # ~20 min on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
sha=$(git rev-parse --short HEAD)
work=$(mktemp -d /tmp/llmtts-ci-XXXXXX)
git clone -q . "$work/repo"
start=$(date +%s)
rc=0
(cd "$work/repo" && CI=true bash .ci/run) > "$work/ci.log" 2>&1 || rc=$?
wall=$(( $(date +%s) - start ))
dest=docs/results/ci/$sha
mkdir -p "$dest"
cp "$work/repo/.ci-results/"*.xml "$work/repo/.ci-results/timing.txt" "$dest/" 2>/dev/null || true
{ echo "commit $sha, $(date -u +%F), exit $rc, wall $wall s (clone to exit, venv setup included)";
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores";
  grep -E "^\[test\] kernel family|passed|failed" "$work/ci.log" | grep -v "^\.\+" | tail -n 8; } > "$dest/summary.txt"
cat "$dest/summary.txt"
rm -rf "$work"
exit $rc
