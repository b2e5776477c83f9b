"""The real local SLURM cluster (slurm/local-cluster.sh) for the launcher tests.

Uses a running cluster as is; otherwise starts it (when its packages are installed) and stops it
at the end. When SLURM can't run here the SLURM tests skip with the reason -- except under
``CI=true``, where that is a failure (.ci/run starts the cluster before the tests).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "slurm" / "local-cluster.sh"
sys.path.insert(0, str(Path(__file__).parent))


def _cluster_up() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and any(s in ("idle", "mixed", "allocated") for s in out.stdout.split())


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"SLURM is required under CI=true but: {reason}", pytrace=False)
    pytest.skip(f"no SLURM cluster: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster():
    """Yields once `sbatch`/`sacct` work against a cluster with an idle node."""
    if _cluster_up():
        yield
        return
    if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
        _unavailable("SLURM is not installed (bash slurm/local-cluster.sh start installs and starts it)")
    if os.geteuid() != 0:
        _unavailable("the local cluster needs root to start (bash slurm/local-cluster.sh start)")
    res = subprocess.run(["bash", str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True, timeout=300)
    if res.returncode != 0 or not _cluster_up():
        _unavailable(f"slurm/local-cluster.sh start failed: {(res.stderr or res.stdout).strip()[-500:]}")
    try:
        yield
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop"], capture_output=True, text=True, timeout=120)


@pytest.fixture
def job_root(tmp_path):
    """Where a test's job directories go; any job still queued or running at teardown is cancelled."""
    root = tmp_path / "jobs"
    yield root
    import json

    ids = [json.loads(p.read_text())["job_id"] for p in root.glob("*/job.json")]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)
