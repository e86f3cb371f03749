"""Atomic file writing: write to a temporary file in the same folder, fsync, rename.

Readers never see a half-written file, and a crash leaves the previous version intact. Two
processes writing the same path each rename a complete file; the last rename wins.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a shared results folder must stay readable
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    import torch

    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def check_writable_dir(path: str | Path, what: str, option: str) -> None:
    """Raise :class:`dfbench.api.errors.OutputPathError` unless ``path`` is, or can become, a writable
    folder: checked before any work, so that a run never finishes its training and then loses it.

    ``what`` names the folder in the message (e.g. "results folder"), ``option`` the command-line
    option that sets it. Nothing is created: the deepest existing ancestor is probed with a
    temporary file, removed at once."""
    from dfbench.api.errors import OutputPathError

    path = Path(path).expanduser()
    fix = f"Pass a writable folder with {option}."
    existing = path
    while not existing.exists() and not existing.is_symlink():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.is_file() or (existing.exists() and not existing.is_dir()):
        where = "is a file" if existing == path else f"cannot be created: {existing} is a file"
        raise OutputPathError(f"The {what} {path} {where}, not a folder. {fix}")
    if not existing.exists():
        raise OutputPathError(f"The {what} {path} cannot be created: {existing} is a broken link. {fix}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".dfbench-write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = "" if existing == path else f" (its nearest existing folder {existing} is not writable)"
        raise OutputPathError(
            f"The {what} {path} is not writable{where}: {exc.strerror or exc}. {fix}"
        ) from None
