import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

import proc_group


@pytest.mark.slow
def test_torchrun_two_ranks_two_workers_exactly_once(make_shards, tmp_path):
    dirs = {}
    for n_shards in (3, 4):
        d, keys = make_shards(n_shards, 5, name=f"s{n_shards}")
        dirs[str(d)] = keys
    out = tmp_path / "report.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(Path(__file__).with_name("dist_reader_check.py")), str(out), *dirs]
    proc = proc_group.run(cmd, timeout=120, env=env)  # a hang kills torchrun and its workers
    assert proc.returncode == 0, proc.stdout[-3000:]
    report = json.loads(out.read_text())
    for d, keys in dirs.items():
        ranks = report[d]
        seen = Counter(k for r in ranks for k in r["keys"])
        assert seen == Counter(keys), f"{d}: an epoch must see every sample exactly once"
        assert all(r["keys"] for r in ranks)  # both ranks got data
        assert all(r["steps"] == 25 for r in ranks)
        assert ranks[0]["agreed"] == ranks[1]["agreed"] > 0
