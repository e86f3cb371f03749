"""Moved to :mod:`dfbench.api.perf` (the run context offers it to every component); this name is the same module."""

import sys

from dfbench.api import perf as _moved

sys.modules[__name__] = _moved
