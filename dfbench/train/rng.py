"""Moved to :mod:`dfbench.api.rng` (the run context offers it to every component); this name is the same module."""

import sys

from dfbench.api import rng as _moved

sys.modules[__name__] = _moved
