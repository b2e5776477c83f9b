"""The training loop on strategy ``none``, in-process: layout, accumulation, EMA, GAN groups, logging."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
import yaml
from safetensors.torch import load_file

from llmtts.config import load_config
from llmtts.errors import UserError
from llmtts.train.toy import ToyConfig, ToyStage
from llmtts.train.trainer import Trainer

# Note: overriding one key of a section rebuilds that section from the dataclass defaults.
FAST = ["log.progress=false", "log.tensorboard=false", "toy.val_batches=2", "trainer.log_every=1"]


def fit(run_dir: Path, *overrides: str, resume: str = "auto"):
    cfg = load_config(ToyConfig, None, FAST + list(overrides))
    return Trainer(ToyStage(cfg, run_dir), cfg, run_dir, resume=resume).fit()


def rows(run_dir: Path, split: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["split"] == split]


def test_run_dir_layout_export_and_keep_last(tmp_path):
    res = fit(tmp_path, "trainer.max_steps=6", "trainer.save_every=2", "trainer.keep_last=2", "trainer.eval_every=3")
    assert res.status == "finished" and res.exit_code == 0 and res.step == 6
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["trainer"]["max_steps"] == 6
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["world_size"] == 1 and env["strategy"] == "none" and env["device"] == "cpu"
    assert env["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert [p.name for p in sorted((tmp_path / "checkpoints").iterdir())] == ["step_00000004", "step_00000006"]
    assert all((p / "COMPLETE").is_file() for p in (tmp_path / "checkpoints").iterdir())
    assert [r["step"] for r in rows(tmp_path)] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows(tmp_path, "val")] == [3, 6]
    assert {"loss", "lr", "grad_norm/main", "samples_per_s"} <= set(rows(tmp_path)[0])
    # The export holds the trained weights, loadable with safetensors alone.
    w = load_file(str(tmp_path / "export" / "model.safetensors"))
    sd = torch.load(tmp_path / "checkpoints" / "step_00000006" / "rank_00000.pt", weights_only=True)
    assert sd["data"] == {"position": 6}
    assert set(w) == set(ToyStage(load_config(ToyConfig), tmp_path).build_models()["model"].state_dict())
    assert (tmp_path / "samples" / "toy_weights_step00000003.png").is_file()


def test_grad_accumulation_matches_bigger_batch(tmp_path):
    a = fit(tmp_path / "a", "trainer.max_steps=4", "data.max_batch_size=8")
    b = fit(tmp_path / "b", "trainer.max_steps=4", "data.max_batch_size=4", "trainer.grad_accum=2")
    wa, wb = load_file(str(tmp_path / "a/export/model.safetensors")), load_file(str(tmp_path / "b/export/model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)
    la, lb = [r["loss"] for r in rows(tmp_path / "a")], [r["loss"] for r in rows(tmp_path / "b")]
    np.testing.assert_allclose(la, lb, rtol=1e-5)
    assert a.step == b.step == 4


def test_ema_export_and_resume_equality(tmp_path):
    # 8 steps straight vs 1 (wall-time stop) + resume 7: same EMA export bit for bit (EMA state is checkpointed).
    fit(tmp_path / "full", "trainer.max_steps=8", "trainer.ema_decay=0.9")
    fit(tmp_path / "half", "trainer.max_steps=8", "trainer.ema_decay=0.9", "trainer.max_minutes=1.0e-9")  # stops at 1
    fit(tmp_path / "half", "trainer.max_steps=8", "trainer.ema_decay=0.9")
    full, half = load_file(str(tmp_path / "full/export/model.safetensors")), load_file(str(tmp_path / "half/export/model.safetensors"))
    for k in full:
        assert torch.equal(full[k], half[k]), k
    # EMA weights differ from the raw weights in the last checkpoint.
    fit(tmp_path / "raw", "trainer.max_steps=8")
    raw_w = load_file(str(tmp_path / "raw/export/model.safetensors"))
    assert not torch.equal(raw_w["out.weight"], full["out.weight"])


def test_gan_stage_two_optimizers(tmp_path):
    res = fit(tmp_path, "trainer.max_steps=5", "toy.gan=true", "trainer.optim.lr=0.001")
    r = rows(tmp_path)
    assert res.step == 5 and {"loss_d", "lr/main", "lr/disc", "grad_norm/disc"} <= set(r[0])
    assert r[0]["lr/disc"] == pytest.approx(0.5 * r[0]["lr/main"])  # per-optimizer override applied


def test_wall_time_stop_checkpoints_and_exports(tmp_path):
    res = fit(tmp_path, "trainer.max_steps=100", "trainer.max_minutes=1.0e-9")
    assert res.status == "finished" and res.step == 1 and res.exit_code == 0
    assert (tmp_path / "checkpoints" / "step_00000001" / "COMPLETE").is_file()
    assert (tmp_path / "export" / "model.safetensors").is_file()


def test_logger_writes_audio_tensorboard(tmp_path):
    fit(tmp_path, "trainer.max_steps=2", "log.tensorboard=true")
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    from llmtts.train.config import LogConfig
    from llmtts.train.loggers import RunLogger

    lg = RunLogger(tmp_path / "x", LogConfig(tensorboard=False), {}, enabled=True)
    p = lg.log_audio("clip/a", np.sin(np.arange(1600) / 10.0).astype(np.float32), 16000, 7)
    lg.close()
    assert p.name == "clip_a_step00000007.wav" and p.stat().st_size > 3000
    off = RunLogger(tmp_path / "y", LogConfig(), {}, enabled=False)
    assert off.log_audio("a", np.zeros(10), 16000, 1) is None and not (tmp_path / "y").exists()


def test_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint"):
        fit(tmp_path, "trainer.max_steps=1", resume=str(tmp_path / "nope"))
    fit(tmp_path / "r", "trainer.max_steps=1")
    with pytest.raises(UserError, match="optimizers"):
        fit(tmp_path / "r", "trainer.max_steps=2", "toy.gan=true")
    with pytest.raises(UserError, match="does not fit the current models"):
        fit(tmp_path / "r", "trainer.max_steps=2", "model.hidden=16")


def test_activation_checkpointing_switch_keeps_the_math(tmp_path, monkeypatch):
    """Same losses with and without it, and the switch is not ignored: each block's forward runs again in
    backward (the recomputation), so the blocks' activation functions run once more per block per training step."""
    calls = {"n": 0}
    gelu = nn.GELU.forward

    def counting(self, x):
        calls["n"] += 1
        return gelu(self, x)
    monkeypatch.setattr(nn.GELU, "forward", counting)
    fit(tmp_path / "a", "trainer.max_steps=3", "trainer.eval_every=0")
    plain, calls["n"] = calls["n"], 0
    fit(tmp_path / "b", "trainer.max_steps=3", "trainer.eval_every=0", "trainer.activation_checkpointing=true")
    assert [r["loss"] for r in rows(tmp_path / "a")] == [r["loss"] for r in rows(tmp_path / "b")]
    # 3 training steps x the toy's blocks: one recomputation each (forwards outside training are not recomputed).
    layers = load_config(ToyConfig, None, FAST).model.layers
    assert plain > 0 and calls["n"] == plain + 3 * layers, (plain, calls["n"])


def test_wandb_offline_lives_in_run_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    fit(tmp_path, "trainer.max_steps=2", "log.wandb=true", "log.wandb_run=toy")
    import os

    assert os.environ["WANDB_MODE"] == "offline"  # no key found -> offline, not a prompt or a crash
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_save_every_minutes_and_sample_hook(tmp_path):
    fit(tmp_path, "trainer.max_steps=3", "trainer.save_every_minutes=1.0e-9", "trainer.keep_last=5",
        "log.log_audio_every=2", "log.progress=false", "log.tensorboard=false")
    assert [p.name for p in sorted((tmp_path / "checkpoints").iterdir())] == [
        "step_00000001", "step_00000002", "step_00000003"]
    assert (tmp_path / "samples" / "toy_weights_step00000002.png").is_file()


def test_nonfinite_gradient_skips_the_update(tmp_path):
    fit(tmp_path, "trainer.max_steps=4", "toy.nan_at_step=2")
    r = rows(tmp_path)
    assert r[1].get("skipped_steps/main") == 1.0 and r[1]["grad_norm/main"] != r[1]["grad_norm/main"]  # NaN
    assert all(v == v for v in (r[2]["loss"], r[3]["loss"]))  # training goes on with finite losses
    w = load_file(str(tmp_path / "export" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in w.values())


def test_bf16_autocast_is_used_and_stays_close(tmp_path):
    fit(tmp_path / "fp32", "trainer.max_steps=3")
    fit(tmp_path / "bf16", "trainer.max_steps=3", "trainer.precision=bf16")
    a, b = [r["loss"] for r in rows(tmp_path / "fp32")], [r["loss"] for r in rows(tmp_path / "bf16")]
    assert a != b  # the compute really ran in bf16
    np.testing.assert_allclose(a, b, rtol=0.03)
    w = load_file(str(tmp_path / "bf16" / "export" / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in w.values())  # weights stay fp32
