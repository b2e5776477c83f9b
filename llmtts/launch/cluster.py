"""Cluster profile (``slurm/*.yaml``): what a SLURM job asks for, overridable on the command line.

A profile holds the site-specific part (partition, account, setup lines) so the same
``llmtts launch --mode slurm --cluster slurm/mysite.yaml llm train ...`` works everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llmtts.config import ConfigError, load_config


@dataclass
class ClusterConfig:
    # Where job directories are created (one unique sub-directory per submission). Must be on a
    # filesystem every node sees.
    job_root: str = "runs/jobs"
    partition: str = ""
    account: str = ""
    qos: str = ""
    constraint: str = ""
    nodes: int = 1
    # One task per GPU. 0 = gpus_per_node, or 1 on CPU-only nodes.
    tasks_per_node: int = 0
    gpus_per_node: int = 0
    cpus_per_task: int = 4
    mem_gb: float = 0.0  # per node; 0 = the partition's default
    time_min: int = 60
    # SIGUSR2 this many seconds before the time limit: the trainer checkpoints, the job is
    # requeued and resumes. Must be shorter than the time limit; allow for one checkpoint
    # (SLURM may send it up to a minute early/late).
    signal_delay_s: int = 180
    # How many times a job may requeue itself after a pre-emption/time-limit signal.
    max_requeues: int = 5
    # Shell lines run in the batch script before the tasks start (module load, venv activate...).
    setup: list[str] = field(default_factory=list)
    # Extra environment for every task.
    env: dict[str, str] = field(default_factory=dict)
    # Any other sbatch flag, e.g. {"exclusive": true, "mail-type": "END"}.
    sbatch: dict[str, object] = field(default_factory=dict)
    # Extra srun flags (each task is started by srun).
    srun_args: list[str] = field(default_factory=list)
    # Python that runs the tasks; "" = the interpreter that submits.
    python: str = ""
    job_name: str = "llmtts"

    def __post_init__(self) -> None:
        # YAML / --set turn `OMP_NUM_THREADS: 4` into an int; the environment only takes strings.
        self.env = {str(k): str(v) for k, v in self.env.items()}
        for name in ("nodes", "time_min"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("tasks_per_node", "gpus_per_node", "cpus_per_task", "max_requeues", "signal_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.signal_delay_s >= self.time_min * 60:
            raise ValueError(f"signal_delay_s ({self.signal_delay_s}) must be shorter than the time limit "
                             f"(time_min={self.time_min} -> {self.time_min * 60} s)")

    @property
    def ntasks_per_node(self) -> int:
        return self.tasks_per_node or self.gpus_per_node or 1

    @property
    def world_size(self) -> int:
        return self.nodes * self.ntasks_per_node


def load_cluster(path: str | Path | None, overrides: list[str] | None = None) -> ClusterConfig:
    """Profile defaults -> ``path`` (YAML) -> ``key=value`` overrides, with errors naming the key."""
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"cluster profile not found: {path} (see slurm/example.yaml)")
    return load_config(ClusterConfig, path, overrides)
