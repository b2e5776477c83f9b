"""The decoder stage resumes exactly (0 and 2 data workers): random crops, losses and weights continue as if
the run had never stopped."""
from pathlib import Path

import pytest
import torch

from llmtts.cli import main
from resume_check import assert_exact_after_sigkill, assert_exact_resume

from decoder_helpers import TINY_OVERRIDES


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # 2: worker processes
def test_decoder_resume_is_bit_exact(data, tmp_path, workers):
    def train(run: Path, steps: int) -> int:
        return main(["decoder", "train", "--input-dir", str(data["hidden"]), "--save-dir", str(run), "--stage", "recon",
                     "--resume", "auto", *TINY_OVERRIDES, "trainer.optim.schedule=constant",
                     "trainer.optim.warmup_steps=2", "recon_crop_tokens=8", "data.max_batch_size=2",
                     f"data.num_workers={workers}", f"trainer.max_steps={steps}"])

    assert_exact_resume(train, tmp_path, k=3, n=6)


def test_decoder_gan_resume_restores_discriminator_and_optimizers_exactly(data, tmp_path):
    """GAN stage stopped at step 2 and resumed to 4: the discriminator, both optimizers' states and the generator
    in the step-4 checkpoint equal an uninterrupted run's, tensor for tensor (a discriminator or its Adam state
    started afresh on resume would differ)."""
    from resume_check import checkpoint_tensors

    recon = tmp_path / "recon"
    assert main(["decoder", "train", "--input-dir", str(data["hidden"]), "--save-dir", str(recon), "--stage", "recon",
                 *TINY_OVERRIDES, "trainer.max_steps=1"]) == 0

    def train(run: Path, steps: int) -> int:
        return main(["decoder", "train", "--input-dir", str(data["hidden"]), "--save-dir", str(run), "--stage", "gan",
                     "--init-from", str(recon), "--resume", "auto", *TINY_OVERRIDES, "trainer.optim.schedule=constant",
                     "trainer.optim.warmup_steps=0", "recon_crop_tokens=8", "data.max_batch_size=2",
                     "trainer.save_every=2", f"trainer.max_steps={steps}"])

    rows = assert_exact_resume(train, tmp_path, k=2, n=4)
    assert {"loss_disc", "adv", "feature_matching"} <= set(rows[4])
    ref = checkpoint_tensors(tmp_path / "uninterrupted" / "checkpoints" / "step_00000004")
    got = checkpoint_tensors(tmp_path / "resumed" / "checkpoints" / "step_00000004")
    for part in ("models.disc.", "models.gen.", "optim.disc.state.", "optim.gen.state."):
        assert any(k.startswith(part) for k in ref), f"no {part}* tensors in the checkpoint"
    assert ref.keys() == got.keys()
    differ = [k for k in ref if not torch.equal(ref[k], got[k])]
    assert not differ, f"checkpoint tensors differ after the resume: {differ[:5]}"


def test_decoder_sigkill_mid_run_resumes_bit_exact(data, tmp_path):
    """SIGKILLed wherever it is after its first checkpoint, resumed: bit for bit."""
    def argv(run: Path, steps: int) -> list[str]:
        return ["decoder", "train", "--input-dir", str(data["hidden"]), "--save-dir", str(run), "--stage", "recon",
                "--resume", "auto", *TINY_OVERRIDES, "trainer.optim.schedule=constant", "trainer.optim.warmup_steps=2",
                "recon_crop_tokens=8", "data.max_batch_size=2", "trainer.save_every=3", "trainer.eval_every=0",
                f"trainer.max_steps={steps}"]

    assert_exact_after_sigkill(argv, tmp_path, save_every=3, n=40)
