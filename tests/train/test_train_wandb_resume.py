"""wandb (offline) across a requeue: a run stopped early with a checkpoint and the run resuming it in the same
folder log into one wandb run id (``RUN/wandb/run_id.txt``), so `wandb sync` continues one run. In-process: the
id lives in the run folder, so a second trainer here sees what a requeued job's new process sees (a subprocess
version cost 25 s of wandb start-ups for the same check)."""

import re

from llmtts.config import load_config
from llmtts.train.toy import ToyConfig, ToyStage
from llmtts.train.trainer import Trainer
from train_runs import BASE, train_losses


def fit(run_dir, *overrides):
    cfg = load_config(ToyConfig, None, BASE + ["log.wandb=true", *overrides])
    return Trainer(ToyStage(cfg, run_dir), cfg, run_dir, resume="auto").fit()


def test_resumed_run_continues_the_same_wandb_run(tmp_path, monkeypatch):
    for var in ("WANDB_API_KEY", "WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    run = tmp_path / "run"
    assert fit(run, "trainer.max_steps=100", "trainer.max_minutes=1.0e-9").step == 1  # stopped, checkpointed
    run_id = (run / "wandb" / "run_id.txt").read_text().strip()
    assert fit(run, "trainer.max_steps=3").step == 3  # resumed from step 1
    assert sorted(train_losses(run)) == [1, 2, 3]
    runs = sorted((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 2, runs  # one local record per start ...
    # ... one run id (wandb adds "-1" to the folder of a second start within the same second)
    one_id = re.compile(rf"offline-run-\d{{8}}_\d{{6}}-{re.escape(run_id)}(-\d+)?")
    assert all(one_id.fullmatch(r.name) and list(r.glob("*.wandb")) for r in runs), runs
    assert (run / "wandb" / "run_id.txt").read_text().strip() == run_id
    other = tmp_path / "other"
    fit(other, "trainer.max_steps=1")
    assert (other / "wandb" / "run_id.txt").read_text().strip() != run_id  # a new folder is a new run
