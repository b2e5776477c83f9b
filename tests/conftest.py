import os
import shutil
import tempfile

import pytest
import torch

# The suite's peak disk use under pyproject's tmp_path retention policy (measured: see docs/testing.md), with a
# margin. Below it, runs used to end in dozens of "No space left on device" errors deep in unrelated tests.
MIN_FREE_GB = float(os.environ.get("LLMTTS_TEST_MIN_FREE_GB", "4"))


def pytest_sessionstart(session):
    """Stop at once, with one line, when the temporary directory's disk cannot hold the suite's peak."""
    where = session.config.option.basetemp or tempfile.gettempdir()
    while not os.path.exists(where):
        where = os.path.dirname(os.path.abspath(where))
    free_gb = shutil.disk_usage(where).free / 1e9
    if free_gb < MIN_FREE_GB:
        pytest.exit(f"only {free_gb:.1f} GB free under {where}; the suite needs ~{MIN_FREE_GB:g} GB for its "
                    "checkpoints and shards (free some space, or point --basetemp / TMPDIR elsewhere; "
                    "LLMTTS_TEST_MIN_FREE_GB overrides the check)", returncode=1)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test model is tiny: one thread is faster than two, and on a busy 2-core machine OpenMP's
    spinning barriers made them up to ~30x slower (measured 0.05 s vs 1.5 s per codec training step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """When the whole tree is collected (no paths given), every tests/**/test_*.py must yield a test: a folder
    that pytest silently skips (as ``dist`` once was, by pytest's default ``norecursedirs``) fails the run."""
    if config.args_source != pytest.Config.ArgsSource.TESTPATHS:
        return
    root = config.rootpath / "tests"
    collected = {item.path for item in items}
    missing = sorted(str(p.relative_to(config.rootpath)) for p in root.rglob("test_*.py") if p not in collected)
    if missing:
        raise pytest.UsageError(f"{len(missing)} test file(s) yielded no tests (not collected?): {', '.join(missing)}")


# CI services announce themselves by these variables (CI=1, CI=true, GITHUB_ACTIONS=true, ...): any of them set to a
# value other than "", 0, false or no is a CI run, whose skips fail.
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "TRAVIS", "JENKINS_URL", "TF_BUILD",
                "TEAMCITY_VERSION", "CONTINUOUS_INTEGRATION")


def under_ci() -> bool:
    return any(os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no") for v in CI_VARIABLES)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``CI=true`` a skip is a failure: a missing extra, sample or tool must not hide a regression as a
    quiet "s". Tests whose skip depends on the host, not on the install, opt out with ``@pytest.mark.host_may_skip``."""
    outcome = yield
    rep = outcome.get_result()
    if (rep.skipped and under_ci() and not hasattr(rep, "wasxfail")
            and item.get_closest_marker("host_may_skip") is None):
        reason = rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome, rep.longrepr = "failed", f"skipped under CI=true (install what it needs): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import (``pytest.importorskip`` at module level)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and under_ci():
        reason = rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome, rep.longrepr = "failed", f"{collector.nodeid} skipped under CI=true (install what it needs): {reason}"
