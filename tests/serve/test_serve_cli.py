"""``llmtts serve`` option checks: one-line errors (exit 2) before the model loads or a port opens."""
from __future__ import annotations

import socket

import pytest

from llmtts.cli import main


@pytest.mark.parametrize("args,needle", [
    (["--max-batch", "0"], "--max-batch must be >= 1"),
    (["--max-queue", "0"], "--max-queue must be >= 1"),
    (["--port", "70000"], "--port must be in 0..65535"),
    (["--timeout", "0"], "--timeout must be > 0"),
    (["--timeout", "inf"], "--timeout must be > 0 and finite"),
    (["--graceful-timeout", "-5"], "--graceful-timeout must be >= 0"),
    (["--max-tokens", "0"], "--max-tokens must be >= 1"),
    (["--api-key-file", "/nonexistent/key.txt"], "--api-key-file /nonexistent/key.txt: cannot read it"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, needle):
    rc = main(["serve", "--llm-path", str(tmp_path / "no-llm"), "--decoder-path", str(tmp_path / "no-dec"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0]


def test_empty_key_file_and_missing_model_are_one_line_errors(tmp_path, capsys):
    key = tmp_path / "key.txt"
    for text in ("\n", "\nsecond-line-is-not-the-key\n"):  # the key is the first line, never a later one
        key.write_text(text)
        assert main(["serve", "--llm-path", "x", "--decoder-path", "y", "--api-key-file", str(key)]) == 2
        assert "first line is empty" in capsys.readouterr().err
    assert main(["serve", "--llm-path", str(tmp_path / "none"), "--decoder-path", str(tmp_path / "none")]) == 2
    assert "no such run or export directory" in capsys.readouterr().err


def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = main(["serve", "--llm-path", str(tmp_path / "none"), "--decoder-path", str(tmp_path / "none"),
                   "--port", str(port)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"--port {port}: cannot listen on 127.0.0.1:{port}" in err[0], err
