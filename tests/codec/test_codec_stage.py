"""The codec stage through the real training core: recon then GAN, metrics, samples, export, resume."""
import json
from pathlib import Path

import pytest
import torch

from llmtts.cli import main as cli_main
from llmtts.codec.export import load_codec

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "codec" / "tiny.yaml"


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_codec_train_recon_then_gan_export_and_resume(audio_shards, tmp_path):
    run = tmp_path / "run"
    args = ["codec", "train", "--config", str(CONFIG), "--input-dir", str(audio_shards), "--save-dir", str(run),
            "trainer.max_steps=4", "trainer.log_every=1", "gan.start_step=2", "data.crop_samples=4096",
            "data.batch_budget=8192", "log.progress=false", "trainer.eval_batches=1"]
    assert cli_main(args) == 0
    train = {m["step"]: m for m in _metrics(run) if m["split"] == "train"}
    assert sorted(train) == [1, 2, 3, 4]
    assert "loss_disc" not in train[2] and "loss_disc" in train[3] and "feature_matching" in train[4]
    for m in train.values():
        assert 0 < m["code_use"] <= 1 and m["perplexity"] >= 1 and m["mel"] > 0
    val = [m for m in _metrics(run) if m["split"] == "val"]
    assert val and "mel" in val[-1]
    assert {p.suffix for p in (run / "samples").iterdir()} == {".wav", ".png"}
    model = load_codec(run)
    assert model.samples_per_token == 1024
    # resume continues from the saved step with the discriminator state
    assert cli_main(args[:-5] + ["trainer.max_steps=6", "trainer.log_every=1", "gan.start_step=2",
                                 "data.crop_samples=4096", "data.batch_budget=8192", "log.progress=false",
                                 "trainer.eval_batches=1"]) == 0
    steps = [m["step"] for m in _metrics(run) if m["split"] == "train"]
    assert steps[-2:] == [5, 6] and steps.count(1) == 1
    resumed = load_codec(run)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))


def test_train_without_input_dir_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["codec", "train", "--config", str(CONFIG), "--save-dir", str(tmp_path / "r")])
    assert "--input-dir" in capsys.readouterr().err


def test_crop_longer_than_budget_is_a_user_error(audio_shards, tmp_path, capsys):
    rc = cli_main(["codec", "train", "--config", str(CONFIG), "--input-dir", str(audio_shards), "--save-dir",
                   str(tmp_path / "r"), "data.crop_samples=65536", "data.batch_budget=1000"])
    assert rc == 2 and "batch_budget" in capsys.readouterr().err


@pytest.mark.slow
def test_codec_gan_trains_under_ddp_with_two_ranks(audio_shards, tmp_path):
    """Real torchrun + gloo: the GAN step's single discriminator forward per backward works with DDP."""
    import os
    import sys

    import proc_group

    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "llmtts.cli", "codec", "train",
           "--config", str(CONFIG), "--input-dir", str(audio_shards), "--save-dir", str(run), "parallel.strategy=ddp",
           "trainer.max_steps=2", "gan.start_step=1", "data.crop_samples=4096", "data.batch_budget=8192",
           "log.progress=false", "trainer.log_every=1", "trainer.eval_batches=1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = proc_group.run(cmd, timeout=180, env=env)  # a hang kills torchrun and its workers
    assert proc.returncode == 0, proc.stdout[-3000:]
    train = [m for m in _metrics(run) if m["split"] == "train"]
    assert [m["step"] for m in train] == [1, 2] and "loss_disc" in train[1] and "loss_disc" not in train[0]
    assert load_codec(run).samples_per_token == 1024
