"""tests/proc_group.py: leaving a ``group`` block (a failed assertion, a timeout) kills torchrun *and* its workers,
which torchrun starts in sessions of their own."""
import os
import sys
import time
from pathlib import Path

import pytest

import proc_group

pytestmark = pytest.mark.slow  # a real torchrun

WORKER = """
import os, pathlib, sys, time
out = pathlib.Path(sys.argv[1])
(out / f"{os.environ['RANK']}.pid").write_text(str(os.getpid()))
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a killed orphan may linger as a zombie until init reaps it


def test_leaving_the_block_kills_torchrun_workers_in_their_own_sessions(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path)]
    with pytest.raises(RuntimeError, match="the test failed here"):
        with proc_group.group(cmd, env=dict(os.environ, OMP_NUM_THREADS="1")) as proc:
            t0 = time.time()
            while len(list(tmp_path.glob("*.pid"))) < 2:
                assert proc.poll() is None and time.time() - t0 < 120, "workers did not start"
                time.sleep(0.1)
            pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
            assert all(os.getsid(pid) == pid for pid in pids)  # each worker leads a session: killpg(torchrun) misses it
            raise RuntimeError("the test failed here")
    assert proc.poll() is not None
    t0 = time.time()
    while any(alive(pid) for pid in pids) and time.time() - t0 < 30:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids), "a torchrun worker survived"
