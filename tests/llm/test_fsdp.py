"""Two real processes (torchrun, gloo) train the tiny LLM with FSDP2 and export a loadable model."""
import json
import os
import signal
import subprocess
import sys

import pytest

from token_shards import make_token_shards

pytestmark = pytest.mark.slow


def test_two_process_fsdp2_run(tmp_path):
    shards = make_token_shards(tmp_path / "tok", n_train=8, n_val=4, per_shard=2)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "llmtts.cli", "llm", "train", "--input-dir", str(shards), "--save-dir", str(run),
           "--from-scratch", "--config", "configs/llm/tiny.yaml",
           "parallel.strategy=fsdp2", "parallel.backend=gloo", "trainer.max_steps=6", "trainer.log_every=1",
           "log.progress=false", "log.tensorboard=false", "vocab.n_audio=64", "packing.row_length=128",
           "data.batch_budget=256", "model.num_hidden_layers=2", "model.max_position_embeddings=256",
           "packing.enabled=true", "packing.attention=segments"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # Own process group, so a hang kills torchrun *and* its workers instead of leaving orphans.
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail("2-process FSDP2 run hung:\n" + out[-3000:])
    assert proc.returncode == 0, out[-4000:]
    env_info = json.loads((run / "env.json").read_text())
    assert env_info["world_size"] == 2 and env_info["strategy"] == "fsdp2"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [m for m in lines if m["split"] == "train"]
    assert [m["step"] for m in train] == list(range(1, 7))
    assert all(m["loss"] == m["loss"] for m in train)  # finite, not NaN
    from llmtts.llm import load_llm

    model, vocab, _ = load_llm(run)
    assert model.config.num_hidden_layers == 2 and vocab.n_audio == 64
    # The checkpoint is a DCP one written by both ranks; the run can resume from it.
    (ckpt,) = list((run / "checkpoints").iterdir())
    assert (ckpt / "COMPLETE").is_file() and (ckpt / "dcp").is_dir()
