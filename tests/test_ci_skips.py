"""Under CI (CI=true, CI=1, GITHUB_ACTIONS=true, ...) a skipped test or module fails the run (tests/conftest.py); host-dependent skips may opt out."""
import importlib.util
import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CASES = '''
import pytest

def test_needs_an_extra():
    pytest.skip("extra not installed")

@pytest.mark.host_may_skip
def test_needs_a_device_node():
    pytest.skip("no device nodes on this host")
'''


def ci_variables() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("suite_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CI_VARIABLES


def _run(pytester, monkeypatch, ci: str, name: str, variable: str = "CI"):
    shutil.copy(Path(__file__).with_name("conftest.py"), pytester.path / "conftest.py")
    pytester.makeini("[pytest]\nmarkers =\n    host_may_skip: x\n")
    pytester.makepyfile(test_cases=CASES, test_module="import pytest\npytest.importorskip('no_such_module_xyz')\n"
                                                         "def test_x():\n    pass\n")
    for v in ci_variables():  # the run's own CI variables must not leak into the inner run
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv(variable, ci)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", name)


@pytest.mark.parametrize("variable,value", [("CI", "true"), ("CI", "1"), ("CI", "TRUE"), ("CI", "yes"),
                                            ("GITHUB_ACTIONS", "true"), ("GITLAB_CI", "true")])
def test_skips_fail_under_ci(pytester, monkeypatch, variable, value):
    _run(pytester, monkeypatch, value, "test_cases.py", variable).assert_outcomes(failed=1, skipped=1)
    _run(pytester, monkeypatch, value, "test_module.py", variable).assert_outcomes(errors=1)


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_skips_stay_skips_outside_ci(pytester, monkeypatch, value):
    _run(pytester, monkeypatch, value, "test_cases.py").assert_outcomes(skipped=2)
    _run(pytester, monkeypatch, value, "test_module.py").assert_outcomes(skipped=1)


def test_a_test_file_that_yields_no_test_fails_the_whole_run(pytester, monkeypatch):
    """The collection guard (tests/conftest.py): with the default test paths, a tests/**/test_*.py that pytest does
    not collect (a folder in ``norecursedirs``, here ``build``) stops the run with one line naming it."""
    for v in ci_variables():
        monkeypatch.delenv(v, raising=False)
    (pytester.path / "tests" / "build").mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("conftest.py"), pytester.path / "tests" / "conftest.py")
    (pytester.path / "tests" / "test_seen.py").write_text("def test_ok():\n    pass\n")
    (pytester.path / "tests" / "build" / "test_hidden.py").write_text("def test_never_run():\n    pass\n")
    pytester.makeini("[pytest]\ntestpaths = tests\nmarkers =\n    host_may_skip: x\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "1 test file(s) yielded no tests" in result.stderr.str() and "tests/build/test_hidden.py" in result.stderr.str()
    (pytester.path / "tests" / "build" / "test_hidden.py").unlink()
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
