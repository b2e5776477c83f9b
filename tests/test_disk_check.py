"""tests/conftest.py stops a run at once, with one line, when the temporary directory's disk cannot hold the
suite's peak (a nearly full disk once failed CI with dozens of unrelated "No space left on device" errors)."""
import shutil
from pathlib import Path

pytest_plugins = ["pytester"]


def _run(pytester, monkeypatch, need_gb: str):
    shutil.copy(Path(__file__).with_name("conftest.py"), pytester.path / "conftest.py")
    pytester.makepyfile(test_one="def test_x():\n    pass\n")
    monkeypatch.setenv("LLMTTS_TEST_MIN_FREE_GB", need_gb)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider")


def test_a_disk_too_small_for_the_suite_stops_it_before_any_test(pytester, monkeypatch):
    r = _run(pytester, monkeypatch, "1e9")  # a petabyte: no host has it free
    assert r.ret == 1
    assert "GB free under" in r.stdout.str() + r.stderr.str() and "passed" not in r.stdout.str()
    assert "Traceback" not in r.stdout.str() + r.stderr.str()


def test_enough_disk_runs_the_tests(pytester, monkeypatch):
    _run(pytester, monkeypatch, "0").assert_outcomes(passed=1)
