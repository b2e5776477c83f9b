"""The codec stage resumes exactly: random crops, both GAN optimizers, the rolling codebook metrics and the
reader position (0 and 2 data workers) continue as if the run had never stopped."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llmtts.cli import main as cli_main
from resume_check import assert_exact_after_sigkill, assert_exact_resume, rows, train_steps_logged

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "codec" / "tiny.yaml"


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # 2: worker processes
def test_codec_resume_is_bit_exact(audio_shards, tmp_path, workers):
    def train(run: Path, steps: int) -> int:
        return cli_main(["codec", "train", "--config", str(CONFIG), "--input-dir", str(audio_shards),
                         "--save-dir", str(run), "--resume", "auto", f"trainer.max_steps={steps}",
                         "trainer.optim.schedule=constant", "trainer.optim.warmup_steps=2", "trainer.log_every=1",
                         "gan.start_step=3", f"data.num_workers={workers}", "data.crop_samples=4096",
                         "data.batch_budget=8192", "log.progress=false", "trainer.eval_batches=1"])

    # 11 clips of 0.4-1 s in 3 shards, 2 crops per batch: the 8 steps cross an epoch boundary.
    ref = assert_exact_resume(train, tmp_path, k=4, n=8)
    assert "loss_disc" in ref[5] and "code_use" in ref[5]


@pytest.mark.slow
def test_ctrl_c_with_data_workers_checkpoints_and_resumes_exactly(audio_shards, tmp_path):
    """Ctrl-C reaches the whole process group (trainer and its 2 DataLoader workers, as from a terminal): the
    workers keep serving, the run checkpoints the step in flight and exits 75, and --resume auto then matches
    an uninterrupted run bit for bit (cosine schedule: both runs have the same max_steps)."""
    args = ["codec", "train", "--config", str(CONFIG), "--input-dir", str(audio_shards), "trainer.max_steps=16",
            "trainer.log_every=1", "data.num_workers=2", "data.crop_samples=4096", "data.batch_budget=8192",
            "log.progress=false", "trainer.eval_batches=1"]
    ref, run = tmp_path / "uninterrupted", tmp_path / "stopped"
    assert cli_main(args + ["--save-dir", str(ref)]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "llmtts.cli", *args, "--save-dir", str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while 2 not in train_steps_logged(run):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the run did not reach step 2"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = proc.stderr.read()
    assert rc == 75 and "KeyboardInterrupt" not in err and "exited unexpectedly" not in err, err[-3000:]
    stopped = json.loads((run / "stopped.json").read_text())["step"]
    assert 2 <= stopped < 16
    assert cli_main(args + ["--save-dir", str(run)]) == 0
    a, b = rows(ref, "train"), rows(run, "train")
    assert sorted(b) == list(range(1, 17)) and all(b[s] == a[s] for s in range(stopped + 1, 17))
    wa, wb = (load_file(str(r / "export" / "model.safetensors")) for r in (ref, run))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_codec_sigkill_mid_run_resumes_bit_exact(audio_shards, tmp_path):
    """SIGKILLed wherever it is after its first checkpoint (GAN steps included), resumed: bit for bit."""
    def argv(run: Path, steps: int) -> list[str]:
        return ["codec", "train", "--config", str(CONFIG), "--input-dir", str(audio_shards), "--save-dir", str(run),
                "--resume", "auto", f"trainer.max_steps={steps}", "trainer.save_every=3",
                "trainer.optim.schedule=constant", "trainer.optim.warmup_steps=2", "trainer.log_every=1",
                "gan.start_step=2", "data.crop_samples=4096", "data.batch_budget=8192", "log.progress=false",
                "trainer.eval_batches=1", "trainer.eval_every=0"]

    assert_exact_after_sigkill(argv, tmp_path, save_every=3, n=24)
