"""The decoder stage resumes exactly (0 and 2 data workers): random crops, losses and weights continue as if
the run had never stopped."""
from pathlib import Path

import pytest

from llmtts.cli import main
from resume_check import assert_exact_resume

from decoder_helpers import TINY_OVERRIDES


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # 2: worker processes
def test_decoder_resume_is_bit_exact(data, tmp_path, workers):
    def train(run: Path, steps: int) -> int:
        return main(["decoder", "train", "--input-dir", str(data["hidden"]), "--save-dir", str(run), "--stage", "recon",
                     "--resume", "auto", *TINY_OVERRIDES, "trainer.optim.schedule=constant",
                     "trainer.optim.warmup_steps=2", "recon_crop_tokens=8", "data.max_batch_size=2",
                     f"data.num_workers={workers}", f"trainer.max_steps={steps}"])

    assert_exact_resume(train, tmp_path, k=3, n=6)
