"""The plugin contract: what a plugin implements and calls.

The interfaces of the component kinds (``datasets``, ``teachers``, ``inversion``, ``alignment``,
``methods``), typed options (``options``), the hook specifications (``hookspecs``), the registries
plugins fill (``registry``, ``plugins``), the run context a component receives (``context``,
``progress``), the errors (``errors``) and the helpers plugins use to read and write files
(``imageio``, ``fileio``, ``safeload``, ``locations``).

Nothing here imports :mod:`dfbench.train` or :mod:`dfbench.app` at module level, nor torch.
"""
