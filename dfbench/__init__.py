"""dfbench: a benchmark framework for data-free cross-modal learning.

Three layers, one subpackage each: :mod:`dfbench.api` (the plugin contract), :mod:`dfbench.train`
(the shared training engine) and :mod:`dfbench.app` (runner, records, suites, leaderboards, the
command line). Every concrete component is a plugin registered through the ``dfbench`` entry-point
group (docs/architecture.md).

The modules' former flat names (``dfbench.engine``, ``dfbench.options``, ...) still import: each is
the very module object of its layer (not a copy), so ``isinstance``, monkeypatching and pickles made
under the old names keep working. They are resolved when first imported, so ``import dfbench``
stays light (no torch).
"""

__version__ = "0.1.0"

import importlib
import importlib.abc
import importlib.util
import sys

# OpenMP threads that sleep while they wait (OMP_WAIT_POLICY=PASSIVE), unless the user chose how they
# wait: libgomp reads it once, when torch loads, so before anything here imports torch (issue 31,
# dfbench/api/perf.py). It changes how threads wait, never what they compute.
from dfbench.api.perf import set_env_defaults as _set_env_defaults  # noqa: E402  (light: no torch)

_set_env_defaults()

#: former flat module name -> the layer that holds it now
_LAYER = {
    **dict.fromkeys(("alignment", "context", "datasets", "errors", "fileio", "hookspecs", "imageio", "inversion",
                     "locations", "methods", "options", "plugins", "progress", "registry", "safeload", "teachers"), "api"),
    **dict.fromkeys(("checkpoint", "distributed", "engine", "evaluation", "metrics", "models", "perf",
                     "reproducibility", "rng", "students", "subset", "terms"), "train"),
    **dict.fromkeys(("cli", "config", "conformance", "interrupts", "leaderboard", "pictures", "queries", "records",
                     "results", "runner", "scaffold", "suites", "summary", "compare", "testing"), "app"),
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import dfbench.<name>`` gives the module ``dfbench.<layer>.<name>`` itself."""

    def find_spec(self, fullname, path=None, target=None):
        head, _, name = fullname.partition(".")
        if head != "dfbench" or name not in _LAYER:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module(f"dfbench.{_LAYER[spec.name.partition('.')[2]]}.{spec.name.partition('.')[2]}")

    def exec_module(self, module):
        pass  # already executed under its own name


sys.meta_path.insert(0, _Alias())


#: the library API (docs/api.md), imported when first used so ``import dfbench`` stays light
_API = {"run": "dfbench.app.library", "run_suite": "dfbench.app.library", "load_results": "dfbench.app.library"}


def __getattr__(name):  # ``dfbench.engine`` as an attribute, like a submodule once imported
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name in _LAYER:
        return importlib.import_module(f"dfbench.{name}")
    raise AttributeError(f"module 'dfbench' has no attribute {name!r}")


from dfbench.api.hookspecs import hookimpl  # noqa: E402  (re-exported for plugins)

__all__ = ["__version__", "hookimpl", "load_results", "run", "run_suite"]
