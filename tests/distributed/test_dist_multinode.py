"""Two "nodes" on loopback: two torchrun agents (``--nnodes 2``, one process each, c10d rendezvous, gloo)
train the tiny LLM. Rank handling, per-rank data sharding and which rank writes what are read from
the run folder and from the opt-in trace records (``LLMTTS_TRACE_DIR``, llmtts/distributed/trace.py), not assumed.
Then the run resumes on one node with two processes, and a SIGKILLed node must make the other one
fail (not hang) and leave a run that ``--resume auto`` continues.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import proc_group
from llmtts.distributed.process_group import _free_port
from train_runs import kill_tree, train_losses, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))  # the LLM tests' token-shard writer
from token_shards import make_token_shards  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["llm", "train", "--from-scratch", "--config", "configs/llm/tiny.yaml", "parallel.backend=gloo",
         "trainer.log_every=1", "log.progress=false", "log.tensorboard=false", "vocab.n_audio=64",
         "model.num_hidden_layers=2", "model.max_position_embeddings=256", "data.batch_budget=256",
         "trainer.optim.warmup_steps=2"]
HANG_S = 120  # a node whose peer died must be gone within this (its collective timeout is 1 min)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    # 4 train shards of 2: two per rank per epoch, so both nodes read every epoch.
    return make_token_shards(tmp_path_factory.mktemp("tok"), n_train=8, n_val=4, per_shard=2)


def env(trace: Path, tag: str) -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TORCH_CPP_LOG_LEVEL="ERROR",
             LLMTTS_TRACE_DIR=str(trace), LLMTTS_TRACE_TAG=tag)
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        e.pop(k, None)
    return e


def stage_args(shards: Path, run: Path, resume: str, overrides: list[str]) -> list[str]:
    return TRAIN + ["--input-dir", str(shards), "--save-dir", str(run), "--resume", resume] + overrides


def start_nodes(shards, run, trace, overrides, resume="auto") -> list[subprocess.Popen]:
    """Node 0 and node 1: one torchrun agent each, meeting at a c10d rendezvous on 127.0.0.1."""
    port = _free_port()
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
               "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
               "--rdzv-id", "multinode-test",
               # Node 0 hosts the rendezvous store, as the master node does on a cluster.
               "--rdzv-conf", f"is_host={'true' if node == 0 else 'false'}", "-m", "llmtts.cli"] + stage_args(shards, run, resume, overrides)
        # Own session per agent (proc_group.start): "a node" is its process group, killed with its workers.
        procs.append(proc_group.start(cmd, cwd=ROOT, env=env(trace / f"node{node}", f"node{node}")))
    return procs


def finish(proc: subprocess.Popen, trace: Path, timeout: float = 180) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_node(proc, trace)  # the workers too: they hold the output pipe open
        out, _ = proc.communicate()
        pytest.fail(f"node still running after {timeout:.0f} s (hang):\n{out[-3000:]}")
    return proc.returncode, out


def finish_saying(proc: subprocess.Popen, trace: Path, line: str, timeout: float) -> tuple[int, str]:
    """``finish`` for a node whose peer was killed: the trainer must exit with ``line`` within ``timeout``. Its
    torchrun agent (the rendezvous host) sometimes lingers in torch elastic's teardown after its worker has
    exited (2 runs in 7 on the CI machine): such an agent is reaped, not counted as the trainer hanging, once the
    trainer has said ``line`` (printed on its way out)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_node(proc, trace)
        out, _ = proc.communicate()  # the output so far is kept across the timeout
        if line not in out:
            pytest.fail(f"node still running after {timeout:.0f} s without saying {line!r} (hang):\n{out[-3000:]}")
    return proc.returncode, out


def rank_records(trace: Path) -> dict[int, dict]:
    return {r["rank"]: r for r in (json.loads(p.read_text()) for p in trace.rglob("rank_*.json"))}


def train_keys(trace: Path) -> dict[int, dict[int, list[str]]]:
    """rank -> epoch -> training sample keys that rank was handed (validation keys left out)."""
    out: dict[int, dict[int, list[str]]] = {}
    for p in trace.rglob("keys_rank*_slot*.jsonl"):
        rank = int(p.name[len("keys_rank"):].split("_")[0])
        for row in map(json.loads, p.read_text().splitlines()):
            out.setdefault(rank, {}).setdefault(row["epoch"], []).extend(k for k in row["keys"] if k.startswith("train_"))
    return out


def data_position(run: Path, step: int, rank: int) -> tuple[int, int]:
    """(epoch, batches consumed) of ``rank``'s reader in the checkpoint of ``step`` (one slot: no workers)."""
    import torch

    state = torch.load(run / "checkpoints" / f"step_{step:08d}" / f"rank_{rank:05d}.pt", weights_only=True)["data"]
    (slot,) = state["slots"].values()
    return slot["epoch"], slot["batches"]


def consumed(trace: Path, rank: int, after: tuple[int, int], upto: tuple[int, int]) -> list[tuple[int, str]]:
    """(epoch, key) of the training samples ``rank`` took in batches after position ``after`` up to ``upto``."""
    out = []
    for p in trace.rglob(f"keys_rank{rank:05d}_slot*.jsonl"):
        for line in p.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a SIGKILLed rank's last line, cut mid-write: a batch past its checkpoint
                continue
            if after < (row["epoch"], row["batch"]) <= upto:
                out += [(row["epoch"], k) for k in row["keys"] if k.startswith("train_")]
    return out


def metric_rows(run: Path, split: str = "train") -> list[int]:
    return [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == split]


def complete_steps(run: Path) -> list[int]:
    return sorted(int(p.parent.name.split("_")[1]) for p in (run / "checkpoints").glob("step_*/COMPLETE"))


def test_two_nodes_train_checkpoint_and_resume_on_one_node(shards, tmp_path):
    run, trace = tmp_path / "run", tmp_path / "trace"
    ov = ["parallel.strategy=ddp", "trainer.max_steps=6", "trainer.save_every=3"]
    nodes = start_nodes(shards, run, trace, ov)
    try:
        for node in nodes:
            rc, out = finish(node, trace)
            assert rc == 0, out[-4000:]
    finally:  # a failure on node 0 must not leave node 1 training in the background
        for node in nodes:
            if node.poll() is None:
                kill_node(node, trace)

    # Ranks: global 0 and 1, one per node, each node's only process has LOCAL_RANK 0.
    recs = rank_records(trace)
    assert sorted(recs) == [0, 1]
    assert {r["tag"] for r in recs.values()} == {"node0", "node1"}
    for rank, r in recs.items():
        assert r["world_size"] == 2 and r["local_rank"] == 0 and r["env_local_rank"] == "0"
        assert r["node_rank"] == rank and r["env_rank"] == str(rank)  # RANK = node_rank * nproc_per_node + LOCAL_RANK
    assert recs[0]["pid"] != recs[1]["pid"]

    # Only global rank 0 writes the run's logs: one train row per step, not one per node.
    assert metric_rows(run) == list(range(1, 7))
    assert json.loads((run / "env.json").read_text())["world_size"] == 2
    assert (run / "export" / "model.safetensors").is_file()
    # Both ranks write their own part of every checkpoint.
    assert complete_steps(run) == [3, 6]
    for step in (3, 6):
        ck = run / "checkpoints" / f"step_{step:08d}"
        assert sorted(p.name for p in ck.glob("rank_*.pt")) == ["rank_00000.pt", "rank_00001.pt"]

    # Data sharding: within every epoch the two nodes read disjoint samples, and epoch 0 covers the train split.
    keys = train_keys(trace)
    assert sorted(keys) == [0, 1]
    for epoch in set(keys[0]) & set(keys[1]):
        assert not set(keys[0][epoch]) & set(keys[1][epoch]), f"epoch {epoch}: both nodes read the same samples"
    assert sorted(keys[0][0] + keys[1][0]) == [f"train_{i:04d}" for i in range(8)]

    # Resume the same run folder on one node with two processes (local ranks 0 and 1), 3 more steps.
    trace2 = tmp_path / "trace2"
    cmd = [sys.executable, "-m", "llmtts.cli", "launch", "--mode", "local", "--nproc-per-node", "2"]
    with proc_group.group(cmd + stage_args(shards, run, "auto", ["parallel.strategy=ddp", "trainer.max_steps=9",
                                                                 "trainer.save_every=3"]),
                          cwd=ROOT, env=env(trace2, "one-node")) as proc:
        rc, out = finish(proc, trace2)
    assert rc == 0, out[-4000:]
    recs = rank_records(trace2)
    assert sorted(recs) == [0, 1] and sorted(r["local_rank"] for r in recs.values()) == [0, 1]
    assert {r["node_rank"] for r in recs.values()} == {0}
    assert metric_rows(run) == list(range(1, 10))  # steps 7..9 appended after the 6 of the two-node run
    assert "resumed at step 6" in out
    assert complete_steps(run)[-2:] == [6, 9]  # older ones pruned by trainer.keep_last
    assert (run / "export" / "model.safetensors").is_file()
    losses = train_losses(run)
    assert sorted(losses) == list(range(1, 10)) and all(math.isfinite(v) for v in losses.values()), losses


def kill_node(agent: subprocess.Popen, trace: Path) -> None:
    """SIGKILL a whole "node": the agent's process group and its workers' (torchrun starts each worker
    in a session of its own, so killing the agent alone leaves them training headless; kill_tree finds them
    as the agent's descendants)."""
    kill_tree(agent)


def test_killed_node_fails_the_other_without_hang_and_run_resumes(shards, tmp_path):
    run, trace = tmp_path / "run", tmp_path / "trace"
    # Far more steps than it will live for: the kill comes right after the first checkpoint.
    # A 1-minute collective timeout: a peer that vanishes without a TCP reset is noticed by then, not in 30.
    ov = ["parallel.strategy=ddp", "trainer.max_steps=100000", "trainer.save_every=3", "parallel.timeout_min=1"]
    node0, node1 = start_nodes(shards, run, trace, ov)
    try:
        wait_for(run / "checkpoints" / "step_00000003" / "COMPLETE", node0, timeout=150)
        kill_node(node1, trace / "node1")
        lost = "llmtts: error: rank 0: lost contact with another rank"
        rc, out = finish_saying(node0, trace / "node0", lost, timeout=HANG_S)
    finally:
        kill_node(node0, trace / "node0")
        kill_node(node1, trace / "node1")
    print(out[-2500:])
    assert rc != 0
    # One clear line from the surviving trainer, not a gloo traceback.
    assert lost in out, out[-4000:]
    assert not any(line.startswith("[rank0]: Traceback") for line in out.splitlines()), out[-4000:]
    saved = complete_steps(run)
    assert saved and saved[-1] >= 3 and not (run / "export").exists()

    # --resume auto (one node, two processes) continues from the last complete checkpoint.
    k = saved[-1]
    with proc_group.group(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "llmtts.cli"]
            + stage_args(shards, run, "auto", ["parallel.strategy=ddp", f"trainer.max_steps={k + 3}",
                                               "trainer.save_every=3"]),
            cwd=ROOT, env=env(tmp_path / "trace2", "resume")) as proc:
        rc, out = finish(proc, tmp_path / "trace2")
    assert rc == 0, out[-4000:]
    assert f"resumed at step {k}" in out
    steps = metric_rows(run)
    assert steps[-3:] == [k + 1, k + 2, k + 3] and len(steps) == len(set(steps[:-3])) + 3
    assert complete_steps(run)[-1] == k + 3 and (run / "export" / "model.safetensors").is_file()

    # Exactly once across the kill: what each rank took up to checkpoint k (the killed run read past it; those
    # batches were lost with it) plus what the resumed run took up to its end: no sample twice in an epoch,
    # every sample in each epoch both ranks finished.
    start, end = (-1, 0), {r: data_position(run, k + 3, r) for r in (0, 1)}
    seen: dict[int, list[str]] = {}
    for r in (0, 1):
        ck = data_position(run, k, r)
        for epoch, key in consumed(trace, r, start, ck) + consumed(tmp_path / "trace2", r, ck, end[r]):
            seen.setdefault(epoch, []).append(key)
    finished = min(e for e, _ in end.values())
    assert finished >= 1, end
    for epoch, keys in seen.items():
        assert len(keys) == len(set(keys)), f"epoch {epoch}: a sample read twice across the kill/resume: {sorted(keys)}"
        if epoch < finished:
            assert sorted(keys) == [f"train_{i:04d}" for i in range(8)], f"epoch {epoch}: {sorted(keys)}"


def _silent_peer_worker(rank: int, port: int, out_dir: str) -> None:
    import datetime
    import time

    import torch
    import torch.distributed as dist

    from llmtts.distributed import process_group as pg

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=2))
    if rank == 1:
        time.sleep(5)  # alive, connected, but never joins the collective: no TCP reset, only the timeout
        os._exit(0)
    try:
        dist.all_reduce(torch.ones(1))
        verdict = "no error"
    except Exception as exc:  # what the trainer's fit() sees
        verdict = f"{pg.peer_lost(exc)} {exc}"
    Path(out_dir, "verdict").write_text(verdict)
    os._exit(0)  # tearing down a group whose collective timed out may abort the process: skip it


def test_a_collective_timeout_counts_as_a_lost_peer(tmp_path):
    """The path of a peer that vanishes without a reset: the gloo timeout error must get the one-line message."""
    import torch.multiprocessing as mp

    mp.spawn(_silent_peer_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    verdict = (tmp_path / "verdict").read_text()
    assert verdict.startswith("True ") and "timed out" in verdict.lower(), verdict
