"""llmtts.io (and save_wav, which writes through it): atomic writes that never replace a device, FIFO or
symlink, and never share a temporary file between two writers."""
import os
import stat
import threading

import numpy as np
import pytest
import soundfile as sf

from llmtts.audio import save_wav, wav_bytes
from llmtts.errors import UserError
from llmtts.io import (OUTPUT_MARKER, check_output_dir, claim_output_dir, replace_dir, temp_dir_beside,
                       write_file_atomic, write_json_atomic, write_text_atomic)

TONE = (0.3 * np.sin(np.arange(1600) * 0.05)).astype(np.float32)


def _fifo_with_reader(path):
    """A FIFO at ``path`` and a non-blocking read end: O_RDWR never blocks on Linux, so the writer's open
    succeeds at once; a FIFO holds 64 KiB, enough for every payload here."""
    os.mkfifo(path)
    return os.open(path, os.O_RDWR | os.O_NONBLOCK)


def _drain(fd, n):
    data = b""
    while len(data) < n:
        try:
            data += os.read(fd, n - len(data))
        except BlockingIOError:
            break
    return data


def test_fifo_target_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "out.json"
    fd = _fifo_with_reader(fifo)
    try:
        write_json_atomic(fifo, {"a": 1})
        assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced by a regular file"
        assert _drain(fd, 100) == b'{\n  "a": 1\n}\n'
        save_wav(fifo, TONE, 16000)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        expected = wav_bytes(TONE, 16000)
        assert _drain(fd, len(expected)) == expected
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temporary file left behind


@pytest.mark.host_may_skip
def test_device_node_is_written_through(tmp_path):
    """``--out /dev/null`` as root: a null device made here, so a regression cannot break the real one."""
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        with open(node, "wb"):
            pass
    except OSError as exc:  # not root, or a nodev mount
        pytest.skip(f"cannot make or open a device node here ({exc})")
    save_wav(node, TONE, 16000)
    write_text_atomic(node, "x")
    assert stat.S_ISCHR(os.stat(node).st_mode)


def test_symlink_is_kept_and_its_target_gets_the_content(tmp_path):
    real = tmp_path / "real" / "a.wav"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "link.wav"
    link.symlink_to(real)
    save_wav(link, TONE, 16000)
    assert link.is_symlink() and os.readlink(link) == str(real)
    wav, sr = sf.read(real)
    assert sr == 16000 and len(wav) == len(TONE)
    write_text_atomic(link, "text")
    assert link.is_symlink() and real.read_text() == "text"


def test_directory_target_is_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        save_wav(tmp_path, TONE, 16000)


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    """Each writer has its own temporary file: the result is one writer's whole payload, no writer fails."""
    target = tmp_path / "same.wav"
    payloads = [(0.1 * (i + 1) * np.ones(400_000)).astype(np.float32) for i in range(4)]
    errors = []

    def writer(wav):
        try:
            for _ in range(5):
                save_wav(target, wav, 16000)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert target.read_bytes() in [wav_bytes(w, 16000) for w in payloads]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.wav"]


def test_file_writer_lands_whole_or_not_at_all(tmp_path):
    target = tmp_path / "sub" / "model.safetensors"
    write_file_atomic(target, lambda tmp: tmp.write_bytes(b"v1"))
    assert target.read_bytes() == b"v1"

    def fails_half_way(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_file_atomic(target, fails_half_way)
    assert target.read_bytes() == b"v1"  # the old file stands, and no temporary file is left beside it
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.safetensors"]


def test_replace_dir_swaps_a_directory_and_leaves_no_old_copy(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "a").write_text("old")
    claim_output_dir(out, "test")  # an earlier output of ours
    new = temp_dir_beside(out)
    (new / "b").write_text("new")
    assert replace_dir(new, out) == out
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_replace_dir_refuses_a_foreign_folder_and_keeps_every_byte(tmp_path):
    """A folder with a file the project did not write (and no marker) is the user's: refused in one line, its
    content untouched, the temporary folder removed; a sibling named like an old fixed temporary survives."""
    out, sibling = tmp_path / "mine", tmp_path / "mine.tmp"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    sibling.mkdir()
    (sibling / "notes").write_text("mine too")
    new = temp_dir_beside(out)
    (new / "model.safetensors").write_text("x")
    with pytest.raises(UserError, match="not written by llmtts") as e:
        replace_dir(new, out)
    assert "\n" not in str(e.value) and "thesis.tex" in str(e.value)
    assert (out / "thesis.tex").read_text() == "years of work" and (sibling / "notes").read_text() == "mine too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "mine.tmp"]
    # Only names this kind of output consists of (an export made before the marker existed): replaced.
    (out / "thesis.tex").unlink()
    (out / "model.safetensors").write_text("old export")
    new = temp_dir_beside(out)
    (new / "model.safetensors").write_text("new export")
    replace_dir(new, out, recognised=("model.safetensors", "config.json"))
    assert (out / "model.safetensors").read_text() == "new export"


def test_output_is_never_an_input_or_a_folder_holding_one(tmp_path):
    model = tmp_path / "models" / "soprano"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    for out, why in ((model, "is the input"), (tmp_path / "models", "folder above it"), (tmp_path, "folder above it"),
                     (model / "sub", "inside the input")):
        with pytest.raises(UserError, match=why):
            check_output_dir(out, [model], recognised=("config.json",))
    assert (model / "config.json").read_text() == "{}"


def test_a_symlinked_output_folder_is_written_through_and_the_link_kept(tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    new = temp_dir_beside(link)
    (new / "a").write_text("new")
    replace_dir(new, link)
    assert link.is_symlink() and (real / "a").read_text() == "new" and (link / "a").read_text() == "new"
