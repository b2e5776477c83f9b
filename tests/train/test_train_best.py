"""trainer.best_metric: RUN/best/ holds the export from the evaluation with the lowest metric, and survives resume."""
from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from train_runs import run_toy


def _val_history(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["mse"] for r in rows if r.get("split") == "val" and "mse" in r}


def test_best_export_is_the_lowest_validation_metric(tmp_path):
    # A learning rate far too high makes validation MSE go up and down: the best is not the last step.
    run = tmp_path / "run"
    run_toy(run, ["trainer.max_steps=24", "trainer.eval_every=3", "trainer.best_metric=mse",
                  "trainer.optim.lr=0.3", "trainer.optim.schedule=constant", "trainer.optim.warmup_steps=0"])
    hist = _val_history(run)
    assert len(hist) == 8
    best = json.loads((run / "best" / "best.json").read_text())
    step = min(hist, key=hist.get)
    assert best["metric"] == "mse" and best["step"] == step and best["value"] == pytest.approx(hist[step])
    assert step != max(hist), "the toy run must not improve monotonically, or this test proves nothing"
    best_w, last_w = load_file(run / "best" / "model.safetensors"), load_file(run / "export" / "model.safetensors")
    assert any(not (best_w[k] == last_w[k]).all() for k in best_w)

    # Resume to more steps: the best so far is kept unless beaten (the record carries over).
    run_toy(run, ["trainer.max_steps=30", "trainer.eval_every=3", "trainer.best_metric=mse",
                  "trainer.optim.lr=0.3", "trainer.optim.schedule=constant", "trainer.optim.warmup_steps=0"])
    hist = _val_history(run)
    best = json.loads((run / "best" / "best.json").read_text())
    assert best["step"] == min(hist, key=hist.get)


def test_unknown_best_metric_is_a_one_line_error(tmp_path):
    p = run_toy(tmp_path / "run", ["trainer.max_steps=2", "trainer.best_metric=nope"], check=False)
    assert p.returncode != 0
    assert "trainer.best_metric='nope'" in p.stderr and "mse" in p.stderr and "Traceback" not in p.stderr
