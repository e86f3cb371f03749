"""The one loader for torch files dfbench did not just write itself.

Checkpoints in a results folder, cached teachers and datasets, teacher files named in a config:
any of them may come from someone else (a shared grid, a downloaded record set) or be truncated by
a crash. They are data, and loading them must never run code. ``torch.load`` unpickles, and a
pickle can call any function; ``weights_only=True`` restricts the unpickler to tensors and plain
containers (dicts, lists, tuples, numbers, strings), so a file holding anything else is refused
before any of it runs. Every reason a file cannot be loaded is turned into one line that callers
put in a warning or an error (:class:`UnreadableTorchFile`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class UnreadableTorchFile(Exception):
    """A torch file that cannot be loaded safely; ``str()`` is a one-line reason."""


def load_torch_file(path: str | Path, map_location: str = "cpu") -> Any:
    """The content of the torch file at ``path``, loaded without running any code from it.

    Raises :class:`UnreadableTorchFile` (with the reason in one line) for a truncated or foreign
    file, or one that holds Python objects other than tensors and plain containers."""
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise UnreadableTorchFile(
                f"it holds Python objects other than tensors and plain containers ({_refused(exc)}); "
                "loading such a file could run code, so dfbench refuses it"
            ) from None
        raise UnreadableTorchFile(f"it is not a torch file ({_describe(exc)})") from None
    except (EOFError, RuntimeError, ValueError, OSError, AttributeError, IndexError, KeyError) as exc:
        reason = "it is empty or truncated" if _truncated(path, exc) else "it is not a readable torch file"
        raise UnreadableTorchFile(f"{reason} ({_describe(exc)})") from None


def _truncated(path, exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, EOFError) or "failed finding central directory" in text or _size(path) == 0


def _size(path) -> int:
    try:
        return Path(path).stat().st_size
    except (OSError, TypeError):
        return -1


def _refused(exc: BaseException) -> str:
    """What the restricted unpickler refused, e.g. 'Trying to load unsupported GLOBAL posix.system ...'."""
    import re

    for line in str(exc).splitlines():
        if re.match(r"\s*(Trying to load unsupported|Unsupported|WeightsUnpickler error)", line):
            line = line.replace("WeightsUnpickler error: ", "").strip()
            return re.split(r" was not an allowed global| whose module|\. ", line)[0].rstrip(".")
    return _first_line(exc)


def _describe(exc: BaseException) -> str:
    first = _first_line(exc)
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message (libraries add paragraphs of advice)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0].split(". ")[0].rstrip(".") if lines else ""
    return text if len(text) <= 160 else text[:157] + "..."
