"""The test suite is hermetic: a user's installed plugins (a broken one included), caches and
settings do not change dfbench's own test results (issue 32).

- tests/conftest.py sets ``DFBENCH_LOAD_PLUGINS=`` (built-ins only) for the test process and every
  subprocess, gives the session its own cache and drops ``DFBENCH_TEACHERS``;
- errors are found by content (:func:`conftest.error_paragraph`), not by their position in the output,
  so a warning printed before an error does not fail a test that checks the error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, error_paragraph, site_plugins
from test_plugin_loading import BROKEN_IMPORT, make_dist


@pytest.fixture
def broken_site(tmp_path):
    """A plugin whose entry point fails to import, 'installed' as a distribution on a folder that the
    subprocesses get on PYTHONPATH (nothing is installed into the environment)."""
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "dfbench-broken-example", "broken", "broken_plugin", BROKEN_IMPORT)
    return site


def _env(site: Path, **changes) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


BAD_METHOD = ["run", "--method", "dfsbri", "--profile", "smoke", "--quiet"]
EXPECTED = "Error: Unknown method 'dfsbri'. Did you mean 'dfsbir'"


def test_conftest_loads_the_builtins_only(plugin_system):
    assert os.environ["DFBENCH_LOAD_PLUGINS"] == ""
    assert plugin_system.info and all(info.builtin for info in plugin_system.info.values()), [
        (i.name, i.distribution) for i in plugin_system.info.values() if not i.builtin
    ]
    assert "DFBENCH_TEACHERS" not in os.environ
    if os.environ.get("DFBENCH_TEST_CACHE"):  # the tests' own override
        assert os.environ["DFBENCH_CACHE"] == os.environ["DFBENCH_TEST_CACHE"]
    else:  # the session's own folder, whatever the user's DFBENCH_CACHE
        assert Path(os.environ["DFBENCH_CACHE"]).name.startswith("dfbench-cache")


def test_a_broken_installed_plugin_leaves_a_bad_input_error_unchanged(broken_site, tmp_path):
    # as the tests run it (conftest's environment): the broken plugin is not even imported
    quiet = subprocess.run([sys.executable, "-m", "dfbench", *BAD_METHOD], capture_output=True, text=True,
                           env=_env(broken_site), cwd=tmp_path, timeout=300)
    assert quiet.returncode == 2, quiet.stderr
    assert error_paragraph(quiet.stderr).startswith(EXPECTED) and "broken" not in quiet.stderr
    # as a user without DFBENCH_LOAD_PLUGINS runs it: a warning first, then the same error
    loud = subprocess.run([sys.executable, "-m", "dfbench", *BAD_METHOD], capture_output=True, text=True,
                          env=_env(broken_site, DFBENCH_LOAD_PLUGINS=None), cwd=tmp_path, timeout=300)
    assert loud.returncode == 2, loud.stderr
    assert loud.stderr.startswith("warning: plugin 'broken' failed to load"), loud.stderr
    assert error_paragraph(loud.stderr) == error_paragraph(quiet.stderr)
    # named in DFBENCH_LOAD_PLUGINS by its distribution: loaded (and reported) again
    named = subprocess.run([sys.executable, "-m", "dfbench", *BAD_METHOD], capture_output=True, text=True,
                           env=_env(broken_site, DFBENCH_LOAD_PLUGINS=",".join(site_plugins(broken_site))), cwd=tmp_path, timeout=300)
    assert named.returncode == 2 and "plugin 'broken' failed to load" in named.stderr, named.stderr
    assert error_paragraph(named.stderr) == error_paragraph(quiet.stderr)


def test_error_paragraph_finds_the_error_after_warnings_and_nothing_else():
    assert error_paragraph("Error: bad\n") == "Error: bad"
    assert error_paragraph("warning: plugin 'x' failed to load and is skipped: ...\nError: bad\n") == "Error: bad"
    assert error_paragraph("a.py:3: BadImageWarning: skipped\n  warnings.warn(msg)\nError: bad\n") == "Error: bad"
    for output in ("no error here\n", "Error: one\nError: two\n", "progress 10%\nError: bad\n", "Error: bad\nmore\n"):
        with pytest.raises(AssertionError):
            error_paragraph(output)


@pytest.mark.slow
def test_the_suite_passes_with_a_broken_plugin_and_a_users_settings(broken_site, tmp_path):
    """The issue's failure, reproduced: a broken plugin installed, DFBENCH_LOAD_PLUGINS unset, a
    user's cache that is a file and a teacher store that does not exist; dfbench's own bad-input
    tests still pass (conftest overrides all of it)."""
    (tmp_path / "my-cache").write_text("not a folder")
    env = _env(broken_site, DFBENCH_LOAD_PLUGINS=None, DFBENCH_TEST_CACHE=None, DFBENCH_CACHE=str(tmp_path / "my-cache"),
               DFBENCH_TEACHERS=str(tmp_path / "no-such-store"), OMP_NUM_THREADS="1")
    cases = ["unknown-method", "unknown-profile", "invalid-yaml"]
    ids = [f"tests/test_reliability.py::test_bad_input_exits_2_naming_problem_and_fix[{case}]" for case in cases]
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ids], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert f"{len(cases)} passed" in out.stdout
