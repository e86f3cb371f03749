"""Run records: one JSON file per run, written atomically.

``<results>/<dataset>/<method>/<run_id>.json``, where ``run_id = <config_hash>-s<seed>``; files a
run produces besides the record (training curves, the split it used, pictures) go to the folder
``<results>/<dataset>/<method>/<run_id>/``. "Already done" is a file-exists check on a record
whose status is ``completed``.
"""

from __future__ import annotations

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


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
            return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def environment(device) -> dict:
    import numpy
    import torch
    import torchvision

    import dfbench

    env = {
        "dfbench": dfbench.__version__,
        "git_commit": _git_commit(),
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
    if getattr(device, "type", "cpu") == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env
