"""The LLM stage resumes exactly (0 and 2 data workers): losses, the skipped-sample count and the weights
continue as if the run had never stopped."""
from pathlib import Path

import pytest

from llmtts.cli import main
from resume_check import assert_exact_after_sigkill, assert_exact_resume
from token_shards import make_token_shards

TINY = "configs/llm/tiny.yaml"
FAST = ["packing.enabled=true", "log.progress=false", "log.tensorboard=false", "trainer.log_every=1", "vocab.n_audio=64",
        "packing.row_length=128", "data.batch_budget=256", "model.max_position_embeddings=256",
        "model.num_hidden_layers=2", "model.hidden_size=64", "model.intermediate_size=192", "model.head_dim=16",
        "trainer.optim.schedule=constant", "trainer.optim.warmup_steps=2"]


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # 2: worker processes
def test_llm_resume_is_bit_exact(tmp_path, workers):
    shards = make_token_shards(tmp_path / "tok", n_train=8, n_val=2, extra_bad=True)

    def train(run: Path, steps: int) -> int:
        return main(["llm", "train", "--input-dir", str(shards), "--save-dir", str(run), "--resume", "auto",
                     "--from-scratch", "--config", TINY, *FAST, f"data.num_workers={workers}",
                     f"trainer.max_steps={steps}"])

    ref = assert_exact_resume(train, tmp_path, k=4, n=8)
    # The two bad samples are counted in every epoch; the count survives the resume (reader stats are saved).
    assert ref[8]["skipped_samples"] > ref[1]["skipped_samples"] >= 1


def test_llm_sigkill_mid_run_resumes_bit_exact(tmp_path):
    """SIGKILLed wherever it is after its first checkpoint, resumed: bit for bit."""
    shards = make_token_shards(tmp_path / "tok", n_train=8, n_val=2)

    def argv(run: Path, steps: int) -> list[str]:
        return ["llm", "train", "--input-dir", str(shards), "--save-dir", str(run), "--resume", "auto",
                "--from-scratch", "--config", TINY, *FAST, "trainer.save_every=3", "trainer.eval_every=0",
                f"trainer.max_steps={steps}"]

    assert_exact_after_sigkill(argv, tmp_path, save_every=3, n=30)
