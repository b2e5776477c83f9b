"""scripts/gpu-smoke.sh --dry-run: the GPU smoke script's wiring on CPU (same configs and model shapes, a
few steps): it runs every pipeline step and its summary reports the real LLM size and both WER sets."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gpu_smoke_dry_run(tmp_path):
    run = tmp_path / "gpu-smoke"
    env = dict(os.environ, RUN=str(run), OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    p = subprocess.run(["bash", "scripts/gpu-smoke.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=880)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads((run / "gpu-smoke.json").read_text())
    assert summary["llm_params"] == 79_714_048  # the soprano-80m shape, not a stand-in
    assert summary["llm_tokens_per_s"] > 0 and summary["mfu"] is None  # no GPU: no peak to divide by
    assert set(summary["wer"]) == {"train", "unseen"}
    assert "tokens/s" in p.stdout and "WER unseen" in p.stdout
    steps = json.loads((run / "pipeline.json").read_text())["steps"]
    assert all(s["status"] == "done" for s in steps), steps
