"""Where the checkout's shipped files are, whatever the current folder.

dfbench is installed from its checkout (``pip install -e .``): the suites (``benchmarks/*.yaml``),
the papers' reported numbers (``benchmarks/reported``), the committed leaderboards
(``leaderboards/*.md``) and their run records (``leaderboards/records``) sit beside the
``dfbench`` package. Commands look in the current folder first (a checkout, or a user's own
project laid out the same way), then beside the installed package, so ``dfbench bench smoke`` and
``dfbench leaderboard --check`` work from any folder.
"""

from __future__ import annotations

from pathlib import Path


def package_root() -> Path:
    """The folder holding the installed ``dfbench`` package (the checkout, for an editable install)."""
    import dfbench

    return Path(dfbench.__file__).resolve().parent.parent


def shipped_root() -> Path:
    """Where a built wheel carries the suites and reported numbers (``dfbench/_shipped``, written
    by setup.py's build step); absent in a checkout, which has them at its root."""
    import dfbench

    return Path(dfbench.__file__).resolve().parent / "_shipped"


def candidates(relative: str) -> list[Path]:
    """``relative`` under the current folder, then under the package root, then inside the
    installed package (a wheel's ``_shipped``), each once."""
    out = []
    for base in (Path.cwd(), package_root(), shipped_root()):
        path = base / relative
        if path not in out:
            out.append(path)
    return out


def find_dir(relative: str) -> Path | None:
    """The first existing folder among :func:`candidates` (None: none exists)."""
    return next((p for p in candidates(relative) if p.is_dir()), None)


def suites_dir() -> Path:
    """Where suites are found by name: ``./benchmarks`` when it holds suites, else the checkout's."""
    found = candidates("benchmarks")
    for path in found:
        if any(path.glob("*.yaml")):
            return path
    return found[1]  # the checkout's (where a user would add one)


def committed_records() -> Path | None:
    """The committed run records the leaderboards are built from (``leaderboards/records``)."""
    return find_dir("leaderboards/records")


def teacher_store() -> Path | None:
    """The pinned teachers the committed leaderboards ran on (``leaderboards/teachers``, or the folder
    ``$DFBENCH_TEACHERS`` names), looked up after the cache: a teacher trained on another kind of CPU
    differs in its last bits, so the leaderboards' teachers travel with the checkout instead of being
    trained again on each machine (docs/protocol.md, "Same teachers")."""
    import os

    if os.environ.get("DFBENCH_TEACHERS"):
        return Path(os.environ["DFBENCH_TEACHERS"])
    return find_dir("leaderboards/teachers")


def default_data_label(name: str) -> str:
    """How the default root of dataset ``name`` is named in messages: by the variable it comes from
    (``$DFBENCH_DATA/name`` only when DFBENCH_DATA is set, else ``$DFBENCH_CACHE/data/name``, else
    the cache's default folder)."""
    import os

    if os.environ.get("DFBENCH_DATA"):
        return f"$DFBENCH_DATA/{name}"
    if os.environ.get("DFBENCH_CACHE"):
        return f"$DFBENCH_CACHE/data/{name}, as DFBENCH_DATA is not set"
    return f"data/{name} in the cache folder, as neither DFBENCH_DATA nor DFBENCH_CACHE is set"
