"""Shard-parallel preprocessing as N SLURM tasks (or N array elements): no process group needed."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from llmtts.data.shards import ShardWriter

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def make_input(root: Path, n_shards: int = 5) -> list[str]:
    rels = []
    for i in range(n_shards):
        rel = f"train/shard-{i:06d}.tar"
        with ShardWriter(root / rel, rel_path=rel, split="train") as w:
            for j in range(2):
                w.write(f"s{i}_{j}", {"json": {"text": "hi", "duration_s": 1.0, "speaker": "a"}})
        rels.append(rel)
    return rels


def ranks_in(tar_path: Path) -> set[tuple[int, int]]:
    with tarfile.open(tar_path) as tf:
        metas = [json.load(tf.extractfile(m)) for m in tf.getmembers() if m.name.endswith(".json")]
    return {(m["rank"], m["world_size"]) for m in metas}


@pytest.mark.parametrize("how", [["--nproc-per-node", "2"], ["--array", "2"]], ids=["tasks", "array"])
def test_shards_split_over_ranks(slurm_cluster, job_root, tmp_path, how):
    rels = make_input(tmp_path / "in")
    res = subprocess.run(
        [sys.executable, "-m", "llmtts.cli", "launch", "--mode", "slurm", "--cluster", str(REPO / "slurm" / "local.yaml"),
         "--job-dir", str(job_root), *how, "--wait", "--set", f"env.PYTHONPATH={Path(__file__).parent}",
         "--module", "launch_shard_map_helper", "in", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=150)
    assert res.returncode == 0, res.stdout + res.stderr
    # Shard i (sorted) was written by rank i % 2 of 2; rank 0 then indexed all of them.
    for i, rel in enumerate(rels):
        assert ranks_in(tmp_path / "out" / rel) == {(i % 2, 2)}, rel
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["kind"] == "tokens" and sorted(s["path"] for s in index["shards"]) == rels
