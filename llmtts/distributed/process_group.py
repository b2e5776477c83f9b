"""The process group: who am I (rank / world) and how ranks talk, from torchrun or SLURM variables.

torchrun sets ``RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT``. Under ``srun`` (one task per GPU)
only ``SLURM_*`` exist; we translate them so ``init_process_group("env://")`` works the same way.
A run that was not launched distributed gets no process group for ``strategy: none`` and a
one-process group otherwise (so ddp / fsdp2 / deepspeed code paths also run on a laptop).
"""
from __future__ import annotations

import datetime
import os
import re
import socket
import subprocess
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist

from llmtts.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _first_slurm_host(nodelist: str) -> str:
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=10, check=True).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    # "node[01-04,07],other" -> "node01" without scontrol.
    m = re.match(r"([^\[,]+)(?:\[([0-9]+))?", nodelist)
    return (m.group(1) + (m.group(2) or "")) if m else "127.0.0.1"


def _export_slurm_env() -> None:
    """Translate SLURM task variables into torchrun's, when srun (not torchrun) started us."""
    env = os.environ
    if "WORLD_SIZE" in env or int(env.get("SLURM_NTASKS", "1")) <= 1 or "SLURM_PROCID" not in env:
        return
    env["RANK"] = env["SLURM_PROCID"]
    env["WORLD_SIZE"] = env["SLURM_NTASKS"]
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    env.setdefault("MASTER_ADDR", _first_slurm_host(env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", "127.0.0.1"))))
    # A port derived from the job id, so two jobs sharing a node do not collide.
    env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))


def launched_distributed() -> bool:
    _export_slurm_env()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_process_group(single_process_group: bool = False, backend: str = "auto",
                       timeout_min: float = 30.0) -> DistInfo:
    """Create the default process group when launched distributed, or (``single_process_group``, wanted by
    every strategy but ``none``) a one-process group otherwise; idempotent. Called by
    ``Strategy.start`` (``llmtts.distributed.strategies``), the one place a run joins its group."""
    if dist.is_available() and dist.is_initialized():
        return info()
    multi = launched_distributed()
    if not multi and not single_process_group:
        return DistInfo()
    if not multi:
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, init_method="env://",
                            timeout=datetime.timedelta(minutes=timeout_min))
    return info()


def pick_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The device a process of a (possibly distributed) job uses, the one picker for training, encoding and
    dumping: ``auto`` = this process' GPU (local rank modulo the visible GPUs), else Apple MPS, else CPU.
    ``local_rank`` defaults to the launcher's (``LOCAL_RANK`` from torchrun, ``SLURM_LOCALID`` from srun),
    so every rank of a plain ``srun`` gets its own GPU instead of all of them ``cuda:0``."""
    local = env_ranks().local_rank if local_rank is None else local_rank
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device cuda was asked for but no CUDA device is visible")
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device(name)


def env_ranks(env: Mapping[str, str] | None = None) -> DistInfo:
    """Rank, world size and local rank from the launcher's variables, without a process group: torchrun's
    (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``), else SLURM's (``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``),
    else 0/1/0. The one place rank discovery reads the environment."""
    env = os.environ if env is None else env
    for rank_var, world_var, local_var in (("RANK", "WORLD_SIZE", "LOCAL_RANK"),
                                           ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")):
        if rank_var in env and world_var in env:
            rank, world = int(env[rank_var]), int(env[world_var])
            if not 0 <= rank < world:
                raise UserError(f"{rank_var}={rank} is outside {world_var}={world}")
            return DistInfo(rank, world, int(env.get(local_var, env.get("SLURM_LOCALID", "0"))))
    return DistInfo(local_rank=int(env.get("LOCAL_RANK", env.get("SLURM_LOCALID", "0"))))


def info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


# What gloo / NCCL / the TCP store say when the other end of a collective is gone (a node died, a process was
# killed): matched on the message because gloo raises a plain RuntimeError.
_PEER_LOST = ("connection reset by peer", "connection closed by peer", "connection was likely closed",
              "broken pipe", "connection refused", "remote process exited", "socket timeout", "timed out")


def peer_lost(exc: BaseException) -> bool:
    """True for the error a collective raises when another rank has died."""
    if isinstance(exc, dist.DistNetworkError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _PEER_LOST)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def destroy_process_group() -> None:
    if is_dist():
        dist.destroy_process_group()


def barrier() -> None:
    if is_dist() and dist.get_world_size() > 1:
        dist.barrier()


def _reduce_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce(values: list[float], op: str = "mean") -> list[float]:
    """Reduce a list of floats over ranks (``mean`` / ``sum`` / ``max`` / ``min``), one collective."""
    if not is_dist() or dist.get_world_size() == 1 or not values:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_reduce_device())
    red = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
    dist.all_reduce(t, op=red)
    if op == "mean":
        t /= dist.get_world_size()
    return t.tolist()


def mean_over_ranks(metrics: dict[str, float]) -> dict[str, float]:
    """Average each metric over the ranks that reported it (ranks may report different keys:
    a mismatch must neither hang the collective nor mix metrics up)."""
    if not is_dist() or dist.get_world_size() == 1:
        return dict(metrics)
    key_lists: list = [None] * dist.get_world_size()
    dist.all_gather_object(key_lists, sorted(metrics))
    keys = sorted(set().union(*key_lists))
    vals = [float(metrics.get(k, 0.0)) for k in keys] + [1.0 if k in metrics else 0.0 for k in keys]
    red = all_reduce(vals, "sum")
    n = len(keys)
    return {k: red[i] / red[n + i] for i, k in enumerate(keys) if red[n + i] > 0}
