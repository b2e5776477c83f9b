"""Under CI=true a skipped test or module fails the run (tests/conftest.py); host-dependent skips may opt out."""
import shutil
from pathlib import Path

pytest_plugins = ["pytester"]

CASES = '''
import pytest

def test_needs_an_extra():
    pytest.skip("extra not installed")

@pytest.mark.host_may_skip
def test_needs_a_device_node():
    pytest.skip("no device nodes on this host")
'''


def _run(pytester, monkeypatch, ci: str, name: str):
    shutil.copy(Path(__file__).with_name("conftest.py"), pytester.path / "conftest.py")
    pytester.makeini("[pytest]\nmarkers =\n    host_may_skip: x\n")
    pytester.makepyfile(test_cases=CASES, test_module="import pytest\npytest.importorskip('no_such_module_xyz')\n"
                                                         "def test_x():\n    pass\n")
    monkeypatch.setenv("CI", ci)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", name)


def test_skips_fail_under_ci(pytester, monkeypatch):
    _run(pytester, monkeypatch, "true", "test_cases.py").assert_outcomes(failed=1, skipped=1)
    _run(pytester, monkeypatch, "true", "test_module.py").assert_outcomes(errors=1)


def test_skips_stay_skips_outside_ci(pytester, monkeypatch):
    _run(pytester, monkeypatch, "", "test_cases.py").assert_outcomes(skipped=2)
    _run(pytester, monkeypatch, "", "test_module.py").assert_outcomes(skipped=1)
