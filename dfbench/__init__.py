"""dfbench: a benchmark framework for data-free cross-modal learning.

The core defines the interfaces (datasets, teacher loaders, inversion strategies, alignment losses,
methods), the runner, the metrics and the run records. Every concrete component is a plugin
registered through the ``dfbench`` entry-point group.
"""

__version__ = "0.1.0"

from dfbench.hookspecs import hookimpl  # noqa: E402  (re-exported for plugins)

__all__ = ["__version__", "hookimpl"]
