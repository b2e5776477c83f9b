import hashlib
import json

import pytest

from llmtts.export_dir import resolve_export
from llmtts.train import checkpoint_dir as ck
from llmtts.errors import UserError


def _make(root, step, files=None, complete=True):
    d = root / ck.step_dir_name(step)
    d.mkdir(parents=True)
    files = files or {"trainer.json": b"{}"}
    for name, data in files.items():
        (d / name).write_bytes(data)
    if complete:
        (d / ck.COMPLETE).write_text(json.dumps({"files": {n: len(b) for n, b in files.items()},
                                                 "sha256": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}}))
    return d


def test_find_latest_skips_partial_and_truncated(tmp_path, caplog):
    good = _make(tmp_path, 10)
    _make(tmp_path, 20, complete=False)  # killed mid-write
    bad = _make(tmp_path, 30, {"a.bin": b"12345"})
    (bad / "a.bin").write_bytes(b"12")  # truncated after sealing
    with caplog.at_level("WARNING"):
        assert ck.find_latest(tmp_path) == good
    assert "step_00000030" in caplog.text and "step_00000020" in caplog.text
    assert ck.resolve_resume("none", tmp_path) is None
    with pytest.raises(UserError, match="not usable"):
        ck.resolve_resume(str(bad), tmp_path)


def test_prune_keeps_last_complete(tmp_path):
    for s in (1, 2, 3, 4):
        _make(tmp_path, s)
    _make(tmp_path, 5, complete=False)
    ck.prune(tmp_path, 2)
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [3, 4, 5]


def test_resolve_export(tmp_path):
    (tmp_path / "export").mkdir()
    with pytest.raises(UserError, match="not an export directory"):
        resolve_export(tmp_path)
    (tmp_path / "export" / "config.json").write_text("{}")
    assert resolve_export(tmp_path) == tmp_path / "export"
    assert resolve_export(tmp_path / "export") == tmp_path / "export"
    with pytest.raises(UserError, match="no such"):
        resolve_export(tmp_path / "missing")


def test_rank_state_with_numpy_values_loads_weights_only(tmp_path):
    import numpy as np
    import torch

    ck.save_rank_state(tmp_path, 3, {"data": {"pos": np.int64(7), "order": np.arange(3), "names": ["a"]}})
    got = ck.load_rank_state(tmp_path, 3)
    assert got["data"]["pos"] == 7 and torch.equal(got["data"]["order"], torch.arange(3))
    (tmp_path / "rank_00004.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="rank_00004.pt"):
        ck.load_rank_state(tmp_path, 4)
    assert ck.load_rank_state(tmp_path, 5) is None


def test_check_complete_verifies_checksums_and_listing(tmp_path):
    d = _make(tmp_path, 1, {"a.bin": b"abcdef", "trainer.json": b"{}"})
    assert ck.check_complete(d) is None
    (d / "a.bin").write_bytes(b"abcdeF")  # same size, one byte changed
    assert "sha256" in ck.check_complete(d) and ck.check_complete(d, verify=False) is None
    (d / "a.bin").write_bytes(b"abcdef")
    (d / "extra.pt").write_bytes(b"x")  # a file the save never wrote
    assert "extra.pt" in ck.check_complete(d) and "not in its COMPLETE manifest" in ck.check_complete(d)
    (d / "extra.pt").unlink()
    manifest = json.loads((d / ck.COMPLETE).read_text())
    del manifest["sha256"]  # an older version's manifest: sizes only
    (d / ck.COMPLETE).write_text(json.dumps(manifest))
    assert "no sha256 checksums" in ck.check_complete(d)
