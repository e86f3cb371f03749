import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def test_data_root() -> Path:
    """Where the real-data tests look: $DFBENCH_TEST_DATA (an override for the tests only), else
    $DFBENCH_DATA (what the README and 'dfbench run' use), else ../shared/data beside the checkout."""
    for var in ("DFBENCH_TEST_DATA", "DFBENCH_DATA"):
        if os.environ.get(var):
            return Path(os.environ[var])
    return SHARED_DATA


test_data_root.__test__ = False  # a helper, not a test


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
    """Teachers and generated datasets go to one cache per test session (CI's ../shared is read-only)."""
    if not os.environ.get("DFBENCH_CACHE"):
        os.environ["DFBENCH_CACHE"] = str(tmp_path_factory.mktemp("dfbench-cache"))
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
