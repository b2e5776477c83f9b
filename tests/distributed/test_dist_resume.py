"""Resume across strategies and world sizes, ZeRO-3 resume, and what DeepSpeed checkpoints refuse (docs/training.md,
"Checkpoints and resume"). Toy stage, gloo, at most 2 processes.

The strategy/world-size chain trains one run folder in five legs, none (1 process) -> ddp (2) -> fsdp2 (2) ->
fsdp2 (1) -> none (1), and compares every step's loss and the exported EMA weights with one uninterrupted 1-process run of
the same global batch. Legs that change the world size restart the data position (documented); the toy table
holds exactly two global batches (``toy.num_samples=16``, global batch 8), so every leg boundary falls on an
epoch boundary and the restarted stream hands out the very samples the uninterrupted run reads. Anything lost
in a reshard (Adam moments, the schedule, EMA, a parameter) shows up in the next steps' losses.
"""
import pytest
import torch

from llmtts.errors import UserError
from train_runs import fit_inprocess, export_weights, kill_tree, popen_toy, run_toy, train_losses, train_losses_tolerant, wait_for, \
    wait_for_step

pytestmark = pytest.mark.slow

# constant schedule (after warmup): a leg's own trainer.max_steps does not change the learning rates.
CHAIN = ["toy.num_samples=16", "trainer.optim.schedule=constant", "trainer.optim.warmup_steps=2",
         "trainer.grad_clip=1.0", "trainer.ema_decay=0.9"]
FRESH = "data positions and RNG streams start fresh"  # the world-size-change warning
ZERO3 = ["trainer.max_steps=8", "trainer.save_every=4", "trainer.grad_clip=1.0", "trainer.optim.warmup_steps=2",
         "parallel.strategy=deepspeed", "parallel.deepspeed.zero_stage=3", "data.max_batch_size=4"]



def assert_follows(run, ref, steps):
    got, want = train_losses(run), train_losses(ref)
    assert sorted(got) == list(steps)
    torch.testing.assert_close(torch.tensor([got[s] for s in steps]), torch.tensor([want[s] for s in steps]),
                               rtol=1e-5, atol=1e-6)
    w, w_ref = export_weights(run), export_weights(ref)
    assert w.keys() == w_ref.keys()
    for k in w_ref:
        torch.testing.assert_close(w[k], w_ref[k], rtol=1e-5, atol=1e-6)


def test_resume_switches_strategy_and_world_size_and_keeps_training_exactly(tmp_path):
    ref = tmp_path / "ref"
    fit_inprocess(ref, *CHAIN, "data.max_batch_size=8", "trainer.max_steps=10")
    run = tmp_path / "run"
    fit_inprocess(run, *CHAIN, "data.max_batch_size=8", "trainer.max_steps=2")                # none, 1 process
    grow = run_toy(run, CHAIN + ["data.max_batch_size=4", "trainer.max_steps=4", "parallel.strategy=ddp"], nproc=2)
    same = run_toy(run, CHAIN + ["data.max_batch_size=4", "trainer.max_steps=6", "parallel.strategy=fsdp2"], nproc=2)
    # FSDP2's 2 shards of every parameter and Adam moment gathered into 1 (a one-process FSDP2 group).
    shrink = run_toy(run, CHAIN + ["data.max_batch_size=8", "trainer.max_steps=8", "parallel.strategy=fsdp2"])
    res = fit_inprocess(run, *CHAIN, "data.max_batch_size=8", "trainer.max_steps=10")     # fsdp2 -> none, 1 process
    assert res.step == 10
    assert "saved with 1 ranks, resuming on 2" in grow.stderr and "resumed at step 2" in grow.stderr
    assert FRESH not in same.stderr and "resumed at step 4" in same.stderr  # same world: data positions restored
    assert "saved with 2 ranks, resuming on 1" in shrink.stderr and "resumed at step 6" in shrink.stderr
    # Two training steps after every switch, each equal to the uninterrupted run's; the export holds EMA weights.
    assert_follows(run, ref, range(1, 11))


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory, deepspeed_ops):
    """A 2-rank ZeRO-3 run SIGKILLed (torchrun and both workers) two steps after its step-4 checkpoint, then
    resumed with --resume auto to step 8. Returns the run folder and the losses the killed run had logged."""
    run = tmp_path_factory.mktemp("zero3") / "run"
    proc = popen_toy(run, ZERO3 + ["toy.step_sleep=0.2"], nproc=2)
    try:
        wait_for(run / "checkpoints" / "step_00000004" / "COMPLETE", proc)
        wait_for_step(run, 6, proc)
    finally:
        kill_tree(proc)
    before = train_losses_tolerant(run / "metrics.jsonl")
    assert not (run / "export").exists()
    run_toy(run, ZERO3, nproc=2)
    return run, before


def test_zero3_resumes_exactly_after_sigkill(zero3_run, tmp_path):
    run, before = zero3_run
    assert {5, 6} <= set(before) and max(before) < 8  # killed after the checkpoint, before the end
    after = train_losses(run)
    assert sorted(after) == list(range(1, 9))
    assert all(after[s] == before[s] for s in before)  # the lost steps replayed bit for bit
    ref = tmp_path / "ref"  # the same global batch on one process; EMA is refused with ZeRO-3
    fit_inprocess(ref, *[o for o in ZERO3 if not o.startswith(("parallel.", "data."))], "data.max_batch_size=8")
    assert_follows(run, ref, range(1, 9))


def one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def test_deepspeed_checkpoint_refuses_another_world_size_stage_or_strategy(zero3_run, tmp_path):
    run, _ = zero3_run
    one = run_toy(tmp_path / "one", ZERO3, resume=str(run), check=False)  # 1 process
    assert "DeepSpeed checkpoint from 2 ranks cannot resume on 1" in one_line_error(one)
    stage = run_toy(tmp_path / "stage2", [o.replace("zero_stage=3", "zero_stage=2") for o in ZERO3], resume=str(run),
                    check=False)
    assert "ZeRO stage 3" in one_line_error(stage)
    with pytest.raises(UserError, match="saved with strategy 'deepspeed', cannot resume with 'none'"):
        fit_inprocess(tmp_path / "none", "trainer.max_steps=8", resume=str(run))
    # ... and a DCP checkpoint (none/ddp/fsdp2) is not a DeepSpeed one.
    fit_inprocess(tmp_path / "dcp", "trainer.max_steps=1")
    back = run_toy(tmp_path / "ds", ZERO3, resume=str(tmp_path / "dcp"), check=False)
    assert "saved with strategy 'none', cannot resume with 'deepspeed'" in one_line_error(back)


def test_ema_with_zero3_is_a_one_line_error(tmp_path):
    p = run_toy(tmp_path, ZERO3 + ["trainer.ema_decay=0.9"], check=False)
    assert "trainer.ema_decay needs full parameters" in one_line_error(p)
    assert not (tmp_path / "checkpoints").exists()
