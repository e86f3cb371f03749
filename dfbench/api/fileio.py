"""Atomic file writing: write to a temporary file in the same folder, fsync, rename.

Readers never see a half-written file, and a crash leaves the previous version intact. Two
processes writing the same path each rename a complete file; the last rename wins.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


#: errno values that say the disk refused a write, not that the code is wrong
STORAGE_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO", "EFBIG")
                           if hasattr(errno, name))


def storage_error(exc: OSError, path: Path):
    """A :class:`dfbench.api.errors.StorageError` paragraph for a write the disk refused, or None
    for any other error (left as it is)."""
    from dfbench.api.errors import StorageError

    if isinstance(exc, StorageError) or exc.errno not in STORAGE_ERRNOS:
        return None
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    fix = {"ENOSPC": "Free space on that disk", "EDQUOT": "Free space within your quota",
           "EROFS": "That file system is read-only: use a writable one", "EIO": "The disk reported an I/O error: check it",
           "EFBIG": "The file is larger than that file system allows: use another"}.get(name, "Make that folder writable for you")
    err = StorageError(f"Could not write {path}: {exc.strerror or name} ({name}). {fix}, or point the results "
                       "(--results) or the cache ($DFBENCH_CACHE, --cache-dir) somewhere else; nothing half-written was "
                       "left there, and what was written before is intact. Then run the same command again.")
    err.errno = exc.errno  # still an OSError whose errno a caller may inspect
    return err


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path``; on success it replaces ``path`` atomically. A write the
    disk refuses (full, read-only, ...) raises :class:`dfbench.api.errors.StorageError`, with the
    temporary file removed and ``path`` as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        binary = "b" in mode
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a shared results folder must stay readable
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        refused = storage_error(exc, path) if isinstance(exc, OSError) else None
        if refused is not None:
            raise refused from exc
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


#: names a results folder or leaderboard already uses for files of its own: a record, a plugin or a
#: suite may not take them (``"dataset": "README"`` would overwrite the leaderboards' overview)
RESERVED_NAMES = frozenset({"readme", "index", "con", "prn", "aux", "nul", *(f"{d}{i}" for d in ("com", "lpt") for i in range(1, 10))})
#: characters no name that becomes a file or folder may hold: separators, and what Windows refuses
_FORBIDDEN = frozenset('/\\:*?"<>|')
MAX_NAME = 100


def name_problem(name) -> str | None:
    """Why ``name`` cannot be one component of a path dfbench writes or reads (None: it can).

    A safe name is a non-empty string of at most :data:`MAX_NAME` characters, printable, without a
    path separator or any of ``:*?"<>|``, not ``.``/``..``, not starting with a dot (a hidden file,
    or a way up) or a dash, not ending with a dot or a space, and none of :data:`RESERVED_NAMES`
    (any case, with or without an extension)."""
    import unicodedata

    if not isinstance(name, str):
        return f"it is not a string (found the {type(name).__name__} {name!r})"
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME:
        return f"it is {len(name)} characters long (at most {MAX_NAME})"
    bad = sorted({c for c in name if c in _FORBIDDEN or c == os.sep or (os.altsep and c == os.altsep)})
    if bad:
        return f"it holds {' '.join(repr(c) for c in bad)} (a path separator or a character file names may not hold)"
    control = [c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") or (c.isspace() and c != " ")]
    if control:
        return f"it holds the control or invisible character {control[0]!r}"
    if name in (".", ".."):
        return "it is a way up or the folder itself, not a name"
    if name.startswith("."):
        return "it starts with a dot (a hidden file)"
    if name.startswith("-"):
        return "it starts with a dash (it would read as a command-line option)"
    if name != name.strip() or name.endswith("."):
        return "it starts or ends with a space, or ends with a dot"
    if name.split(".")[0].lower() in RESERVED_NAMES:
        return f"{name.split('.')[0]!r} is reserved (README is the leaderboards' overview page; CON, NUL, ... are devices on Windows)"
    return None


def safe_component(name, what: str) -> str:
    """``name`` when it is safe as one path component (:func:`name_problem`), else raise
    :class:`dfbench.api.errors.UnsafeNameError` naming ``what`` it is (e.g. "the record's dataset")."""
    from dfbench.api.errors import UnsafeNameError

    problem = name_problem(name)
    if problem is not None:
        shown = name if isinstance(name, str) else repr(name)
        raise UnsafeNameError(
            f"{what[:1].upper()}{what[1:]} {ascii(shown)} cannot name a file or folder: {problem}. A name must be a "
            "single path component: letters, digits and '-', '_', '.', '+', spaces or parentheses, with no path "
            "separator, no '..', no leading dot."
        )
    return name


def safe_relative(path, what: str) -> Path:
    """``path`` (a string such as a record's ``artifacts``, ``dataset/method/run_id``) as a relative
    :class:`Path` whose every part is a safe name (:func:`safe_component`): never absolute, never up."""
    if not isinstance(path, str) or not path:
        safe_component(path, what)  # raises: not a string, or empty
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "\\")) or (len(parts[0]) >= 2 and parts[0][1] == ":"):
        from dfbench.api.errors import UnsafeNameError

        raise UnsafeNameError(f"{what[:1].upper()}{what[1:]} {ascii(path)} is an absolute path; it must be relative to its results folder.")
    for part in parts:
        problem = name_problem(part)
        if problem is not None:
            from dfbench.api.errors import UnsafeNameError

            raise UnsafeNameError(
                f"{what[:1].upper()}{what[1:]} {ascii(path)} has the part {ascii(part)}, which cannot name a file or "
                f"folder: {problem}. It must be a relative path inside its results folder."
            )
    return Path(*parts)
