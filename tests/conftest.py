import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Hermetic: the user's installed plugins and settings never change dfbench's own results. Set here,
# at import (before any test module loads a plugin system), for this process and, through the
# environment, every subprocess a test starts. A test that needs a plugin names it
# (``DFBENCH_LOAD_PLUGINS=example``, :func:`load_plugins_env`); the real-data tests still read
# $DFBENCH_DATA (test_data_root), and the cache is the session's own (_isolated_cache).
os.environ["DFBENCH_LOAD_PLUGINS"] = ""  # built-ins only (docs/plugins.md, "Loading rules")
for _var in ("DFBENCH_TEACHERS", "DFBENCH_DIST_TIMEOUT"):  # the checkout's teacher store, default timeouts
    os.environ.pop(_var, None)


def test_data_root() -> Path:
    """Where the real-data tests look: $DFBENCH_TEST_DATA (an override for the tests only), else
    $DFBENCH_DATA (what the README and 'dfbench run' use), else ../shared/data beside the checkout."""
    for var in ("DFBENCH_TEST_DATA", "DFBENCH_DATA"):
        if os.environ.get(var):
            return Path(os.environ[var])
    return SHARED_DATA


test_data_root.__test__ = False  # a helper, not a test


def sealed(record: dict) -> dict:
    """A hand-made record made consistent the way dfbench checks records on read: its ``config``
    (``{"fixture": <its config_hash>}`` when it has none) and the ``config_hash`` recomputed from it."""
    from dfbench.app.config import config_hash

    if not isinstance(record.get("config"), dict):
        record["config"] = {"fixture": str(record.get("config_hash"))}
    record["config_hash"] = config_hash(record["config"])
    return record


def load_plugins_env(*names: str) -> dict[str, str]:
    """The environment entry that loads the built-ins and the plugins ``names`` only (entry-point or
    distribution names): what a test that needs a third-party plugin passes to its subprocess."""
    return {"DFBENCH_LOAD_PLUGINS": ",".join(names)}


def site_plugins(folder: Path) -> list[str]:
    """The distributions written into ``folder`` (by :func:`write_dist_info` or by hand): the names a
    test puts in ``DFBENCH_LOAD_PLUGINS`` to load exactly those plugins."""
    names = []
    for meta in sorted(Path(folder).glob("*.dist-info/METADATA")):
        for line in meta.read_text(encoding="utf-8").splitlines():
            if line.startswith("Name: "):
                names.append(line[len("Name: "):].strip())
    return names


def error_paragraph(output: str) -> str:
    """The one ``Error: ...`` paragraph of a failed command's output, wherever it is: warnings (a
    plugin that failed to load, a skipped image) may precede it. Asserts there is exactly one, that
    everything before it is a warning and that nothing follows it; returns it (without the newline)."""
    lines = output.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("Error: ")]
    assert len(errors) == 1, f"expected one 'Error: ' paragraph, found {len(errors)} in {output!r}"
    [at] = errors
    # dfbench's "warning: ..." lines, and Python warnings ("file.py:12: SomeWarning: ..." and its
    # indented source line)
    # and a run's "Note: the machine is busy ..." (dfbench.api.perf.busy_note, on a loaded machine)
    others = [line for line in lines[:at] if line.strip() and "warning" not in line.lower() and not line[:1].isspace()
              and not line.startswith("Note: the machine is busy")]
    assert not others, f"output before the error that is no warning: {others!r}"
    assert not any(line.strip() for line in lines[at + 1:]), f"output after the error: {lines[at + 1:]!r}"
    return lines[at]


def write_dist_info(folder: Path, name: str, version: str, entry_points: dict[str, str]) -> Path:
    """A minimal installed-distribution record (``<name>-<version>.dist-info`` with METADATA and
    entry_points.txt) in ``folder``: with ``folder`` on ``sys.path``, ``importlib.metadata`` finds the
    distribution and its ``dfbench`` entry points exactly as it finds a pip-installed one, and
    nothing is installed into the environment."""
    info = Path(folder) / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    lines = ["[dfbench]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(folder)


# Slow tests of files other work owns, marked here rather than in those files; each took 10 s or
# more on a loaded 2-core machine. The quick tier is 'python -m pytest -m "not slow"'.
SLOW_ELSEWHERE = {
    "test_plugin_loading.py::test_broken_plugins_are_listed_and_the_cli_keeps_working",
    "test_reliability.py::test_nan_loss_stops_the_run_and_records_why",
    "test_reliability.py::test_skip_bad_images_completes_with_a_warning",
    "test_resume.py::test_sigkill_then_resume_matches_uninterrupted",
    "test_resume.py::test_bench_killed_midway_completes_without_redoing_finished_runs",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if f"{item.path.name}::{item.originalname}" in SLOW_ELSEWHERE:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Teachers and generated datasets go to one cache per test session (CI's ../shared is read-only),
    never to the user's $DFBENCH_CACHE (teachers cached there could change the tests' numbers);
    $DFBENCH_TEST_CACHE (an override for the tests only) reuses a cache between sessions."""
    os.environ["DFBENCH_CACHE"] = os.environ.get("DFBENCH_TEST_CACHE") or str(tmp_path_factory.mktemp("dfbench-cache"))
    if not os.environ.get("DFBENCH_DATA") and test_data_root().is_dir():
        os.environ["DFBENCH_DATA"] = str(test_data_root())
    yield


@pytest.fixture(autouse=True)
def _torch_threads():
    try:
        import torch

        # OMP_NUM_THREADS wins when set (a loaded machine runs faster on one thread per process)
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1)))
    except ImportError:
        pass
    yield


@pytest.fixture
def plugin_system():
    """A fresh plugin system, reset after the test."""
    from dfbench.api import plugins

    plugins.reset_plugins()
    system = plugins.get_plugins()
    yield system
    plugins.reset_plugins()


@pytest.fixture
def shared_data():
    root = test_data_root()
    if not root.is_dir():
        pytest.skip(f"no real data: {root} does not exist (set DFBENCH_DATA or DFBENCH_TEST_DATA)")
    return root
