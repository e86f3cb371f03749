import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Teachers and generated data go to one cache per session unless DFBENCH_CACHE is set."""
    if not os.environ.get("DFBENCH_CACHE"):
        os.environ["DFBENCH_CACHE"] = str(tmp_path_factory.mktemp("dfbench-cache"))
    yield


@pytest.fixture
def example_plugins():
    """dfbench's plugin system with this plugin in it: through its entry point when the
    distribution is installed, else registered directly (a source checkout)."""
    from dfbench.api import plugins

    import dfbench_example.plugin as module

    plugins.reset_plugins()
    system = plugins.get_plugins()
    if "triplet-pairs" not in system.registry("methods"):
        system.register_plugin(module, name="example")
    yield system
    plugins.reset_plugins()
