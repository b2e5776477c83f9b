import os

import pytest

from llmtts.distributed import process_group as pg
from llmtts.errors import UserError

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


def test_env_ranks_read_torchrun_then_slurm_including_the_local_rank():
    # srun without torchrun sets only SLURM_*: its local id picks the GPU, or every rank of a node takes cuda:0.
    assert pg.env_ranks({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1"}) == pg.DistInfo(3, 4, 1)
    both = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1",
            "SLURM_LOCALID": "0"}
    assert pg.env_ranks(both) == pg.DistInfo(5, 8, 2)
    assert pg.env_ranks({}) == pg.DistInfo()
    with pytest.raises(UserError, match="RANK=4 is outside WORLD_SIZE=4"):
        pg.env_ranks({"RANK": "4", "WORLD_SIZE": "4"})


def test_single_task_is_not_distributed(monkeypatch):
    clear(monkeypatch)
    assert not pg.launched_distributed()
    assert pg.init_process_group(single_process_group=False) == pg.DistInfo()
    assert pg.all_reduce([1.0, 2.0], "mean") == [1.0, 2.0]


def _mean_worker(rank: int, port: int, out_dir: str) -> None:
    import json

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        mine = {"a": 1.0, "b": 2.0} if rank == 0 else {"a": 3.0, "c": 5.0}
        with open(f"{out_dir}/{rank}.json", "w") as f:
            json.dump(pg.mean_over_ranks(mine), f)
    finally:
        dist.destroy_process_group()


def test_mean_over_ranks_with_different_keys(tmp_path):
    import json

    import torch.multiprocessing as mp

    mp.spawn(_mean_worker, args=(pg._free_port(), str(tmp_path)), nprocs=2, join=True)
    for r in (0, 1):
        assert json.loads((tmp_path / f"{r}.json").read_text()) == {"a": 2.0, "b": 2.0, "c": 5.0}
