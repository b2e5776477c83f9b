"""trainer.compile really compiles each block (torch.compile, inductor: C++ kernels on CPU), trains like eager
within float rounding, and keeps parameter names: its checkpoint resumes without compile and its export has the
eager model's keys. Costs 18-60 s on 2 shared cores with a cold inductor cache, 3-7 s warm."""
import json
import shutil

import numpy as np
import pytest
import torch

from llmtts.config import load_config
from llmtts.train.toy import ToyConfig, ToyStage
from llmtts.train.trainer import Trainer
from train_runs import BASE, export_weights


def fit(run_dir, *overrides):
    cfg = load_config(ToyConfig, None, BASE + ["trainer.save_every=3", "trainer.optim.schedule=constant",
                                               *overrides])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Trainer(ToyStage(cfg, run_dir), cfg, run_dir, resume="auto").fit()
    finally:
        torch.set_num_threads(threads)


def losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


@pytest.mark.slow  # inductor's C++ build
def test_compile_compiles_every_block_and_keeps_names(tmp_path):
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile on CPU (inductor) needs a C++ compiler: apt-get install g++")
    from torch._dynamo.utils import counters

    fit(tmp_path / "eager", "trainer.max_steps=3")
    torch._dynamo.reset()
    counters.clear()
    try:
        fit(tmp_path / "compiled", "trainer.max_steps=3", "trainer.compile=true")
        graphs = counters["stats"]["unique_graphs"]
    finally:
        torch._dynamo.reset()
    assert graphs == ToyConfig().model.layers, f"{graphs} graphs compiled"  # one per block, no graph breaks
    eager, compiled = losses(tmp_path / "eager"), losses(tmp_path / "compiled")
    assert eager.keys() == compiled.keys() == {1, 2, 3}
    np.testing.assert_allclose(list(compiled.values()), list(eager.values()), rtol=1e-5)  # fused kernels round
    assert export_weights(tmp_path / "compiled").keys() == export_weights(tmp_path / "eager").keys()
    # Same parameter names in the checkpoint: an eager run resumes from the compiled run's step 3.
    res = fit(tmp_path / "compiled", "trainer.max_steps=4")
    assert res.step == 4 and sorted(losses(tmp_path / "compiled")) == [1, 2, 3, 4]
