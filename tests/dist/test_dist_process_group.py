import os

from llmtts.dist import process_group as pg

LAUNCH_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "SLURM_PROCID")


def clear(monkeypatch):
    # setenv first so monkeypatch records the variables and removes what the code under test sets.
    for k in LAUNCH_VARS:
        monkeypatch.setenv(k, "x")
        monkeypatch.delenv(k)


def test_srun_variables_become_torchrun_variables(monkeypatch):
    clear(monkeypatch)
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    assert pg.launched_distributed()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("5", "8", "1")
    assert os.environ["MASTER_ADDR"] == "gpu07" and os.environ["MASTER_PORT"] == str(20000 + 4242)


def test_single_task_is_not_distributed(monkeypatch):
    clear(monkeypatch)
    assert not pg.launched_distributed()
    assert pg.init_process_group("none") == pg.DistInfo()
    assert pg.all_reduce([1.0, 2.0], "mean") == [1.0, 2.0]
