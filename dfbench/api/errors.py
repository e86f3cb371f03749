"""User-facing errors.

A :class:`DfbenchError` carries a one-paragraph message that says what was wrong and how to fix it.
The CLI prints it without a traceback and exits with status 2.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class DfbenchError(Exception):
    """An error caused by the user's input (names, files, data, configs)."""

    exit_code = 2


class ConfigError(DfbenchError):
    """A config file, override or profile is invalid."""


class DataError(DfbenchError):
    """A dataset is missing, malformed or unreadable."""


class TeacherError(DfbenchError):
    """A teacher checkpoint does not fit the benchmark."""


class UnknownNameError(DfbenchError):
    """A name that no plugin registered."""


class TrainingDivergedError(DfbenchError):
    """A loss became NaN or infinite during training."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' when a close match exists, else ''."""
    matches = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    if not matches:
        return ""
    if len(matches) == 1:
        return f" Did you mean '{matches[0]}'?"
    return " Did you mean " + ", ".join(f"'{m}'" for m in matches[:-1]) + f" or '{matches[-1]}'?"


class OutputPathError(DfbenchError):
    """A folder dfbench must write to is a file, read-only or otherwise unusable."""


class StorageError(OutputPathError, OSError):
    """The disk refused a write (full, over quota, read-only, permission, I/O error): nothing half
    written is left (:func:`dfbench.api.fileio.atomic_open`). An ``OSError`` too, so code that
    treats a failed cache write as a warning still does."""


class UnsafeNameError(DfbenchError):
    """A name that would become a path (a record's dataset or method, a suite, a component) is not
    a single safe path component (:func:`dfbench.api.fileio.safe_component`)."""
