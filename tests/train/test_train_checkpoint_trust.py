"""Checkpoints are verified against the sha256 sums recorded at save time before anything is read: flipped
bytes never load, a corrupt newest checkpoint falls back to the previous good one, and a same-size pickle
swapped into DCP's ``.metadata`` is never unpickled (issue 11 items 2 and 8)."""
import json
import os
import pickle

import pytest
import torch

from llmtts.config import load_config
from llmtts.train import checkpoint_dir as ck
from llmtts.errors import UserError
from llmtts.train.toy import ToyConfig, ToyStage
from llmtts.train.trainer import Trainer
from train_runs import BASE, export_weights, train_losses

# A constant learning rate: the schedule would otherwise depend on max_steps, which these runs change.
COMMON = ["trainer.max_steps=8", "trainer.save_every=4", "trainer.keep_last=3", "trainer.optim.schedule=constant"]


def fit(run_dir, *overrides, resume="auto"):
    cfg = load_config(ToyConfig, None, BASE + COMMON + list(overrides))
    return Trainer(ToyStage(cfg, run_dir), cfg, run_dir, resume=resume).fit()


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def weight_file(ckpt):
    return max((ckpt / "dcp").glob("*.distcp"), key=lambda f: f.stat().st_size)


def test_manifest_records_sha256_of_every_file(tmp_path):
    fit(tmp_path / "run", "trainer.max_steps=4")
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000004"
    manifest = json.loads((ckpt / ck.COMPLETE).read_text())
    files = sorted(str(f.relative_to(ckpt)) for f in ckpt.rglob("*") if f.is_file() and f.name != ck.COMPLETE)
    assert sorted(manifest["sha256"]) == sorted(manifest["files"]) == files
    assert "dcp/.metadata" in files and "rank_00000.pt" in files
    assert all(manifest["sha256"][f] == ck.sha256_file(ckpt / f) for f in files)


def test_flipped_weight_bytes_fall_back_to_the_previous_checkpoint(tmp_path, caplog):
    ref, run = tmp_path / "ref", tmp_path / "run"
    fit(ref, "trainer.max_steps=12")
    fit(run)  # checkpoints at 4 and 8
    newest = run / "checkpoints" / "step_00000008"
    target = weight_file(newest)
    size = target.stat().st_size
    flip_byte(target, size // 2)  # same size: the old size-only manifest let this through
    assert target.stat().st_size == size
    with pytest.raises(UserError, match="sha256"):  # named explicitly: refused, never loaded
        fit(run, "trainer.max_steps=12", resume=str(newest))
    with caplog.at_level("WARNING"):
        res = fit(run, "trainer.max_steps=12")
    warnings = [r.getMessage() for r in caplog.records if "skipping checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and "step_00000008" in warnings[0] and "sha256" in warnings[0]
    assert "\n" not in warnings[0]
    assert res.step == 12
    # The corrupt one was set aside (kept, renamed), so it can neither outrank nor be confused with the new step 8.
    assert ck.check_complete(run / "checkpoints" / "abandoned_step_00000008") is not None
    assert [s for s, _ in ck.list_checkpoints(run / "checkpoints")] == [4, 8, 12]
    # Resumed from step 4: steps 5-12 replayed exactly as in the uninterrupted run.
    assert train_losses(run) == train_losses(ref)
    ref_w, run_w = export_weights(ref), export_weights(run)
    assert ref_w.keys() == run_w.keys() and ref_w
    assert all(torch.equal(ref_w[k], run_w[k]) for k in ref_w)


class _Payload:
    """Unpickling this creates a directory: proof that code from the checkpoint ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_same_size_pickle_in_dcp_metadata_is_never_unpickled(tmp_path, caplog):
    run = tmp_path / "run"
    fit(run)
    meta = run / "checkpoints" / "step_00000008" / "dcp" / ".metadata"
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(str(marker)))
    size = meta.stat().st_size
    assert len(payload) < size
    meta.write_bytes(payload + b" " * (size - len(payload)))  # pickle stops at STOP: the padding is ignored
    with caplog.at_level("WARNING"):
        res = fit(run, "trainer.max_steps=10")
    assert not marker.exists()
    assert res.step == 10 and "step_00000008" in caplog.text and "sha256" in caplog.text
    pickle.loads(payload)  # the payload is live: it was the checksum that kept it from running
    assert marker.is_dir()
