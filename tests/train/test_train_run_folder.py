"""One run per --save-dir (issue 11 item 7): a second trainer on a folder in use stops at start with one line, the
lock goes with the process (also on SIGKILL), and --resume none over an earlier run's checkpoints is refused
before anything is written."""
import pytest

from llmtts.config import load_config
from llmtts.errors import UserError
from llmtts.train.toy import ToyConfig, ToyStage
from llmtts.train.trainer import Trainer
from train_runs import BASE, kill_tree, popen_toy, run_toy, train_losses, wait_for_step


def fit(run_dir, *overrides, resume="auto"):
    cfg = load_config(ToyConfig, None, BASE + list(overrides))
    return Trainer(ToyStage(cfg, run_dir), cfg, run_dir, resume=resume).fit()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower() or "Traceback" in line]


@pytest.mark.slow  # subprocesses
def test_second_trainer_on_the_same_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    first = popen_toy(run, ["trainer.max_steps=1000", "trainer.save_every=2", "toy.step_sleep=0.05"])
    try:
        wait_for_step(run, 3, first)
        second = run_toy(run, ["trainer.max_steps=5"], check=False, timeout=120)
        assert second.returncode == 2
        errors = error_lines(second.stderr)
        assert len(errors) == 1 and "another trainer (pid" in errors[0] and str(run) in errors[0], second.stderr
        assert first.poll() is None  # the first run goes on, undisturbed
        wait_for_step(run, max(train_losses(run)) + 2, first)
    finally:
        kill_tree(first)  # SIGKILL: no chance to release anything itself
    # The kernel dropped the dead process's lock: the folder is usable again and resumes.
    last = int((sorted((run / "checkpoints").glob("step_*"))[-1]).name.split("_")[1])
    assert fit(run, f"trainer.max_steps={last + 2}").step == last + 2


def test_resume_none_over_existing_checkpoints_is_refused(tmp_path):
    fit(tmp_path, "trainer.max_steps=3")
    config_before = (tmp_path / "config.yaml").read_text()
    metrics_before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(UserError, match="--resume none: .* already holds checkpoints .*step_00000003.*--resume auto"):
        fit(tmp_path, "trainer.max_steps=5", resume="none")
    # Nothing of the earlier run was touched, and it still continues.
    assert (tmp_path / "config.yaml").read_text() == config_before
    assert (tmp_path / "metrics.jsonl").read_text() == metrics_before
    assert fit(tmp_path, "trainer.max_steps=5").step == 5
    # Through the CLI: one line, exit 2; a new folder with --resume none is fine.
    p = run_toy(tmp_path, ["trainer.max_steps=6"], resume="none", check=False, timeout=120)
    assert p.returncode == 2 and len(error_lines(p.stderr)) == 1 and "--resume auto" in p.stderr
    assert fit(tmp_path / "new", "trainer.max_steps=2", resume="none").step == 2  # a new folder is fine
