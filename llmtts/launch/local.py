"""``--mode local``: torchrun on this machine (one process per GPU), single- or multi-node.

Multi-node without SLURM: run the same command on every node with ``--nnodes N --node-rank R
--master-addr HOST_OF_RANK_0``. torchrun exports RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT,
which both the trainer (process group) and the shard-parallel preprocessing read.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from llmtts.errors import UserError
from llmtts.launch.task import REQUEUE_EXIT_CODE, STOPPED_MARKER, option_value


def torchrun_command(argv: list[str], *, nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
                     master_addr: str = "", master_port: int = 29500, module: str = "llmtts.cli") -> list[str]:
    if nproc_per_node < 1 or nnodes < 1:
        raise UserError("--nproc-per-node and --nnodes must be >= 1")
    if not 0 <= node_rank < nnodes:
        raise UserError(f"--node-rank {node_rank} must be in [0, {nnodes - 1}]")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc_per_node}"]
    if nnodes == 1:
        cmd.append("--standalone")  # picks a free port: two local runs never collide
    else:
        if not master_addr:
            raise UserError("--nnodes > 1 needs --master-addr (the host of node rank 0)")
        cmd += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", f"--master-addr={master_addr}",
                f"--master-port={master_port}"]
    return cmd + ["-m", module, *argv]


def run_local(argv: list[str], **kw) -> int:
    """torchrun's exit code, except 75 (REQUEUE_EXIT_CODE) when the trainer stopped on a signal
    after checkpointing: torchrun reports any failed worker as 1, the trainer leaves
    ``RUN/stopped.json`` instead, so a wrapping batch script can still requeue."""
    cmd = torchrun_command(argv, **kw)
    print("+ " + " ".join(cmd[2:]), file=sys.stderr, flush=True)
    env = dict(os.environ)
    if kw.get("nproc_per_node", 1) > 1:
        env.setdefault("OMP_NUM_THREADS", "1")  # N processes x all cores each would oversubscribe the CPU
    proc = subprocess.Popen(cmd, env=env)

    def forward(signum, frame):
        # torchrun passes SIGTERM/SIGINT on to its workers but dies on SIGUSR2; the trainer
        # checkpoints and stops on SIGTERM just the same.
        proc.send_signal(signal.SIGTERM if signum == signal.SIGUSR2 else signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGUSR2)}
    try:
        rc = proc.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    save_dir = option_value(argv, "--save-dir")
    if rc != 0 and save_dir and (Path(save_dir) / STOPPED_MARKER).is_file():
        return REQUEUE_EXIT_CODE
    return rc
