"""Run records: one JSON file per run, written atomically.

``<results>/<dataset>/<method>/<run_id>.json``, where ``run_id = <config_hash>-s<seed>``; files a
run produces besides the record (training curves, the split it used, pictures) go to the folder
``<results>/<dataset>/<method>/<run_id>/``. "Already done" is a file-exists check on a record
whose status is ``completed``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

from dfbench.api.fileio import atomic_write_json

SCHEMA = "dfbench.run/1"
METRIC_KEYS = ("mAP@all", "mAP@200", "P@100", "P@200")


def _registered_metric(name: str):
    """The class registered under the metric ``name``, or None (a metric of a plugin not installed
    here is read as a finite number)."""
    try:
        from dfbench.api.plugins import registry

        reg = registry("metrics")
        return reg.load(name) if name in reg.names() else None
    except Exception:  # a broken registry never makes a record unreadable
        return None


def record_path(results: Path, dataset: str, method: str, run_id: str) -> Path:
    return Path(results) / dataset / method / f"{run_id}.json"


def artifacts_dir(results: Path, dataset: str, method: str, run_id: str) -> Path:
    return Path(results) / dataset / method / run_id


def read_record(path: Path) -> dict | None:
    """The record at ``path``, or None when absent or unreadable (a folder, a file of another kind)."""
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # FileNotFoundError, IsADirectoryError, JSONDecodeError, UnicodeDecodeError
        return None
    return rec if isinstance(rec, dict) else None


class BadRecordWarning(UserWarning):
    """A file under a results folder looks like a run record but cannot be used."""


#: file names of records: ``<config_hash>[-d<data digest>]-s<seed>.json``
RECORD_NAME = re.compile(r"^[0-9a-f]{12}(-d[0-9a-f]{8})?-s-?\d+\.json$")
STATUSES = ("completed", "failed", "running")
#: no record dfbench writes comes near this (the largest committed one is a few hundred KiB)
MAX_RECORD_BYTES = 32 * 2**20


def record_problem(rec) -> str | None:
    """Why a parsed record cannot enter a leaderboard, or None when it can."""
    if not isinstance(rec, dict):
        return f"it holds a JSON {type(rec).__name__}, not a record object"
    schema = rec.get("schema")
    if schema != SCHEMA:
        return f"its schema is {schema!r}; this dfbench reads {SCHEMA!r} (run it again with this version)"
    for key, kind in (("dataset", str), ("method", str), ("config_hash", str), ("status", str)):
        if not isinstance(rec.get(key), kind) or not rec.get(key):
            return f"it has no valid '{key}' (found {rec.get(key)!r})"
    seed = rec.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        return f"it has no integer 'seed' (found {seed!r})"
    if rec["status"] not in STATUSES:
        return f"its status {rec['status']!r} is none of {', '.join(STATUSES)}"
    metrics = rec.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        return f"its 'metrics' is a {type(metrics).__name__}, not an object"
    if rec["status"] == "completed":
        if not metrics:
            return "it is marked completed but holds no metrics"
        missing = [k for k in METRIC_KEYS if k not in metrics]
        if missing:
            return f"it is marked completed but lacks the metric(s) {', '.join(missing)}"
        for key in METRIC_KEYS:
            value = metrics[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"its metric {key} is {value!r}, not a number"
            if not math.isfinite(value):
                return f"its metric {key} is {value}, not a finite number (a diverged run is no result)"
            if not 0.0 <= value <= 1.0:  # every retrieval metric is a mean of fractions
                return f"its metric {key} is {value}, outside [0, 1] where every retrieval metric lies"
    for key, value in (metrics or {}).items():  # metrics a plugin registered: read as their declaration says
        if key in METRIC_KEYS:
            continue
        if not isinstance(key, str) or not key or len(key) > 64:
            return f"it holds a metric named {key!r}, not a metric name"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"its metric {key} is {value!r}, not a finite number"
        declared = _registered_metric(key)
        if declared is not None and not declared().in_bounds(float(value)):
            return f"its metric {key} is {value}, outside the bounds {declared.bounds} its registration declares"
    config = rec.get("config")
    if not isinstance(config, dict):
        return f"it has no resolved 'config' object (found {type(config).__name__}): its config hash cannot be checked"
    from dfbench.app.record_model import type_problem

    problem = type_problem(rec)  # every field as the typed record declares it (dfbench.app.record_model)
    if problem is not None:
        return problem
    from dfbench.app.config import config_hash

    try:
        recomputed = config_hash(config)
    except (TypeError, ValueError, RecursionError) as exc:
        return f"its config cannot be hashed ({type(exc).__name__}): it is not a config dfbench wrote"
    if recomputed != rec["config_hash"]:
        return (f"its config_hash {rec['config_hash']!r} is not the hash of its own config ({recomputed!r}): the config "
                "or the hash was changed after the run")
    return None


def is_completed(rec: dict | None) -> bool:
    """Whether ``rec`` is a valid completed record: what makes a run "already done". A record that
    says completed but fails validation (a NaN metric, no metrics) is run again and replaced."""
    return rec is not None and rec.get("status") == "completed" and record_problem(rec) is None


def load_records(results: Path) -> tuple[list[dict], list[tuple[Path, str]]]:
    """The valid run records under ``results`` and, for every file that looks like a record but
    cannot be used, (path, why). A file looks like a record when it is named like one
    (:data:`RECORD_NAME`) or its JSON declares a ``dfbench.run`` schema; other JSON files (a run's
    ``split.json``, foreign files) are not records and are passed over in silence."""
    records, problems, seen = [], [], {}
    for path in sorted(Path(results).rglob("*.json")):
        rec, problem = read_run_record(path)
        if rec is not None:
            # one run (dataset, method, config, seed) is one observation: a copy never counts twice
            run = (rec["dataset"], rec["method"], rec["config_hash"], rec["seed"])
            if rec["status"] == "completed" and run in seen:
                problems.append((path, f"it is a second completed record of the run {seen[run]} already holds "
                                       f"({rec['method']} on {rec['dataset']}, config {rec['config_hash']}, seed {rec['seed']})"))
                continue
            if rec["status"] == "completed":
                seen[run] = path
            records.append(rec)
        elif problem is not None:
            problems.append((path, problem))
    return records, problems


def read_run_record(path: Path) -> tuple[dict | None, str | None]:
    """(the valid record at ``path`` with its ``_path``, None), or (None, why it cannot be used),
    or (None, None) for a JSON file that is not a record at all."""
    import stat

    named = bool(RECORD_NAME.match(Path(path).name))
    try:
        info = Path(path).stat()  # follows links: a link to /dev/zero is a device
    except OSError as exc:
        return None, (f"it cannot be read ({exc.strerror or exc})" if named else None)
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block, a device never end
        return None, ("it is not a regular file (a FIFO, a device or a link to one)" if named else None)
    if info.st_size > MAX_RECORD_BYTES:
        return None, (f"it is {info.st_size / 2**20:.0f} MiB, larger than any record ({MAX_RECORD_BYTES // 2**20} MiB at most)"
                      if named else None)
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_keep_constant)
    except RecursionError:
        return None, ("its JSON is nested too deeply to be a record" if named else None)
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError
        return None, (f"it is not readable JSON ({type(exc).__name__}: {exc})" if named else None)
    declared = isinstance(rec, dict) and str(rec.get("schema", "")).startswith("dfbench.run")
    if not (named or declared):
        return None, None
    problem = record_problem(rec)
    if problem is not None:
        return None, problem
    rec["_path"] = str(path)
    return rec, None


def _keep_constant(name: str) -> float:
    """NaN and Infinity parse as floats (Python writes them), so the validation can name them."""
    return float(name.lower().replace("infinity", "inf"))


def load_valid_records(results: Path) -> list[dict]:
    """The valid run records under ``results``; each file left out is named in a
    :class:`BadRecordWarning` that says why (a leaderboard never silently drops or trusts one)."""
    records, problems = load_records(results)
    for path, why in problems:
        warnings.warn(f"leaving out {path}: {why}", BadRecordWarning, stacklevel=2)
    return records


def write_record(path: Path, record: dict) -> None:
    atomic_write_json(path, record)


def name_problem_of(record: dict) -> str | None:
    """Why a record's names cannot be used as paths or links (None: they can): its ``dataset`` names a
    leaderboard page, its ``dataset`` and ``method`` name folders of records, its suite's ``name`` a
    suite page, its ``artifacts`` and ``pictures`` the files its row links to. Each must be a safe
    path component (:func:`dfbench.api.fileio.name_problem`); ``artifacts`` a relative path of them."""
    from dfbench.api.errors import UnsafeNameError
    from dfbench.api.fileio import name_problem, safe_relative

    for key in ("dataset", "method"):
        problem = name_problem(record.get(key))
        if problem is not None:
            return f"its {key} {ascii(record.get(key))} cannot name a leaderboard page or a folder: {problem}"
    suite = record.get("suite")
    if isinstance(suite, dict) and suite.get("name") is not None:
        problem = name_problem(suite.get("name"))
        if problem is not None:
            return f"its suite name {ascii(suite.get('name'))} cannot name a leaderboard page: {problem}"
    if record.get("artifacts") is not None:
        try:
            safe_relative(record["artifacts"], "its artifacts folder")
        except UnsafeNameError as exc:
            return str(exc)[:1].lower() + str(exc)[1:]
    pictures = record.get("pictures")
    if pictures is not None:
        if not isinstance(pictures, list):
            return f"its pictures is a {type(pictures).__name__}, not a list of file names"
        for picture in pictures:
            problem = name_problem(picture)
            if problem is not None:
                return f"its picture {ascii(picture)} cannot name a file: {problem}"
    return None


class ResultStore:
    """A results folder, the one way records are found, read and written.

    ``records()`` gives every valid record (each checked against the typed record,
    :mod:`dfbench.app.record_model`, its config hash recomputed, its names safe as paths, one completed
    record per run); each file left out is named in one :class:`BadRecordWarning`. ``read(path)``
    reads one record file the same way. ``write(record)`` validates a record and writes it atomically
    at its place, ``<dataset>/<method>/<run_id>.json``. Every reader (run, bench, leaderboard,
    results, compare, reproduce, the site, ``dfbench.load_results``, the suite scripts) goes through it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, dataset: str, method: str, run_id: str) -> Path:
        from dfbench.api.fileio import safe_component

        return record_path(self.root, safe_component(dataset, "the dataset name"), safe_component(method, "the method name"),
                           safe_component(run_id, "the run id"))

    def scan(self) -> tuple[list[dict], list[tuple[Path, str]]]:
        """(valid records, [(path, why)] of the files that look like records and cannot be used)."""
        records, problems = load_records(self.root)
        kept = []
        for rec in records:
            problem = name_problem_of(rec)
            if problem is None:
                kept.append(rec)
            else:
                problems.append((Path(rec.get("_path", "?")), problem))
        return kept, problems

    def records(self, *, dataset: str | None = None, method: str | None = None, warn: bool = True) -> list[dict]:
        """The valid records (of ``dataset`` and ``method`` when given), each with its ``_path``."""
        records, problems = self.scan()
        if warn:
            for path, why in problems:
                warnings.warn(f"leaving out {path}: {why}", BadRecordWarning, stacklevel=2)
        return [r for r in records if (dataset is None or r["dataset"] == dataset) and (method is None or r["method"] == method)]

    def read(self, path: str | Path) -> tuple[dict | None, str | None]:
        """(the valid record at ``path``, None) or (None, why it cannot be used; None: not a record)."""
        rec, problem = read_run_record(Path(path))
        if rec is not None and (problem := name_problem_of(rec)) is not None:
            return None, problem
        return rec, problem

    def write(self, record: dict) -> Path:
        """Validate ``record`` and write it atomically at its place; a record this store would not
        read back is refused (ValueError naming why), so no reader ever meets it."""
        clean = {k: v for k, v in record.items() if k != "_path"}
        problem = record_problem(clean) or name_problem_of(clean)
        if problem is not None:
            raise ValueError(f"refusing to write a record this store would not read back: {problem}")
        path = self.path(clean["dataset"], clean["method"], clean.get("run_id") or f"{clean['config_hash']}-s{clean['seed']}")
        write_record(path, clean)
        return path

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


#: the CPU features that change which kernels oneDNN and torch pick (and so the order of sums)
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def isa_features() -> list[str]:
    """Which of :data:`ISA_FLAGS` this CPU has (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            break
    return [f for f in ISA_FLAGS if f in flags]


def onednn_version() -> str | None:
    """The oneDNN (MKL-DNN) version torch was built with, from its build configuration."""
    import torch

    found = re.search(r"(?:oneDNN|MKL-DNN) v([\d.]+)", torch.__config__.show())
    return found.group(1) if found else None


def torchvision_version() -> str | None:
    """torchvision's ``__version__`` (with its build tag, e.g. ``0.29.1+cu130``) read from its
    ``version.py`` without importing it: importing torchvision pulls in torch._dynamo, seconds of a
    run that builds no torchvision model (measured: 3.9 s of a 13 s cached first command at load 4)."""
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        return None
    if "torchvision" not in sys.modules:
        for folder in spec.submodule_search_locations or []:
            try:
                text = (Path(folder) / "version.py").read_text(encoding="utf-8")
            except OSError:
                continue
            found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
            if found:
                return found.group(1)
    import torchvision

    return torchvision.__version__


def environment(device) -> dict:
    from dfbench.train.reproducibility import cpu_kind
    import numpy
    import torch

    import dfbench

    env = {
        "dfbench": dfbench.__version__,
        "git_commit": pin_code_state(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # which CPU kernels ran (AVX2, AVX512, ...): another kind of CPU sums in another order
        "cpu": cpu_kind(),
        # what else decides the last bits on a CPU: the oneDNN kernels' version and the ISA they may use
        "onednn": onednn_version(),
        "isa": isa_features(),
        "device": str(device),
    }
    changed = code_changed()
    if changed is not None:  # modules imported after the change come from the new code
        env["code_changed_since_start"] = changed[1]
    if getattr(device, "type", "cpu") == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def teacher_names(record: dict) -> dict[str, tuple]:
    """Each teacher role a record's run loaded -> (the weights' digest or None, the cache entry's file
    name, the teacher's accuracy). Records made before digests were recorded have only the other two.
    A modality's own classifier is named by its side (``query``, ``gallery``: the record's
    ``data.modalities``, else the default pair's), so that two records that call a modality by two
    names still compare their teachers role by role."""
    out = {}
    for role, t in (record.get("teachers") or {}).items():
        if isinstance(t, dict):
            out[_side_of(record, role)] = (t.get("weights_sha256"), Path(str(t.get("cache") or "")).name,
                                           json.dumps(t.get("accuracy"), sort_keys=True))
    return out


def _side_of(record: dict, role: str) -> str:
    """``role`` of a record's teachers with a modality's key replaced by its side."""
    from dfbench.api.modalities import DEFAULT_PAIR, ModalityPair

    declared = (record.get("data") or {}).get("modalities")
    try:
        pair = ModalityPair.parse(declared) if declared else DEFAULT_PAIR
    except ValueError:
        pair = DEFAULT_PAIR
    return pair[role].role if role in pair else role


def pinned_teachers(store: Path | None = None) -> frozenset:
    """The weight digests of the pinned teachers (``manifest.json`` of the teacher store,
    :func:`dfbench.api.locations.teacher_store` by default): the teachers any machine loads bit for bit,
    and so the reference a leaderboard compares every row's teachers against. Empty without a store."""
    from dfbench.api.locations import teacher_store

    store = store if store is not None else teacher_store()
    manifest = Path(store) / "manifest.json" if store is not None else None
    if manifest is None or not manifest.is_file():
        return frozenset()
    try:
        entries = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return frozenset()
    return frozenset(e["weights_sha256"] for e in entries.values() if isinstance(e, dict) and e.get("weights_sha256"))


def ran_on_pinned(record: dict, pinned: frozenset) -> bool:
    """Did every teacher of a record's run have pinned weights (by digest)?"""
    names = teacher_names(record)
    return bool(names) and all(digest in pinned for digest, _, _ in names.values())


def same_teachers(a: dict, b: dict) -> bool:
    """Did two records' runs load the same teachers, role by role (the roles both loaded)? By the
    weights' digests where both records have them; else by the cache entry and the teacher's accuracy
    (a teacher trained again on another kind of CPU differs in its last bits, and in its accuracy
    more often than not: equal accuracies there are the best evidence old records allow)."""
    ta, tb = teacher_names(a), teacher_names(b)
    for role in set(ta) & set(tb):
        (da, ca, aa), (db, cb, ab) = ta[role], tb[role]
        if (da and db and da != db) or ((not da or not db) and (ca, aa) != (cb, ab)):
            return False
    return True
