import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Teachers and generated datasets go to one cache per test session (CI's ../shared is read-only)."""
    if not os.environ.get("DFBENCH_CACHE"):
        os.environ["DFBENCH_CACHE"] = str(tmp_path_factory.mktemp("dfbench-cache"))
    if not os.environ.get("DFBENCH_DATA") and SHARED_DATA.is_dir():
        os.environ["DFBENCH_DATA"] = str(SHARED_DATA)
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
    from dfbench import plugins

    plugins.reset_plugins()
    system = plugins.get_plugins()
    yield system
    plugins.reset_plugins()


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the checkout")
    return SHARED_DATA
