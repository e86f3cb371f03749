"""Run records: one JSON file per run, written atomically.

``<results>/<dataset>/<method>/<run_id>.json``, where ``run_id = <config_hash>-s<seed>``; files a
run produces besides the record (training curves, the split it used, pictures) go to the folder
``<results>/<dataset>/<method>/<run_id>/``. "Already done" is a file-exists check on a record
whose status is ``completed``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from dfbench.fileio import atomic_write_json

SCHEMA = "dfbench.run/1"
METRIC_KEYS = ("mAP@all", "mAP@200", "P@100", "P@200")


def record_path(results: Path, dataset: str, method: str, run_id: str) -> Path:
    return Path(results) / dataset / method / f"{run_id}.json"


def artifacts_dir(results: Path, dataset: str, method: str, run_id: str) -> Path:
    return Path(results) / dataset / method / run_id


def read_record(path: Path) -> dict | None:
    """The record at ``path``, or None when absent or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def write_record(path: Path, record: dict) -> None:
    atomic_write_json(path, record)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git(*args: str) -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def code_state() -> str | None:
    """The checkout's code state now: ``<commit>``, or ``<commit>-dirty-<digest>`` with uncommitted
    changes to tracked files (the digest names the diff, so two different edits differ); None
    outside a git checkout (an installed package does not change under a running process)."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        return None
    state = head.strip()
    diff = _git("diff", "HEAD", "--no-ext-diff", "--no-color")
    if diff:
        state += "-dirty-" + hashlib.sha1(diff.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return state


_pinned_state: list = []  # [state] once pinned: the code this process started with


def pin_code_state() -> str | None:
    """Note the code state this process started with (once; later calls return the first).

    A long ``dfbench bench`` imports plugin modules lazily, run after run: when the checkout changes
    under it, later runs mix the code it started with and the new one. Records name the state at
    the process start and, when it has changed since, say so (``environment``).
    """
    if not _pinned_state:
        _pinned_state.append(code_state())
    return _pinned_state[0]


def code_changed() -> tuple[str | None, str | None] | None:
    """(state at the process start, state now) when the checkout changed since, else None."""
    started = pin_code_state()
    current = code_state()
    return None if current == started else (started, current)


def environment(device) -> dict:
    import numpy
    import torch
    import torchvision

    import dfbench

    env = {
        "dfbench": dfbench.__version__,
        "git_commit": pin_code_state(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    changed = code_changed()
    if changed is not None:  # modules imported after the change come from the new code
        env["code_changed_since_start"] = changed[1]
    if getattr(device, "type", "cpu") == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env
