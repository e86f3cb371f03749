"""``dfbench reproduce RECORD``: run a record again from its own resolved config and say, metric by
metric, whether the numbers came back bit for bit, within a stated tolerance, or differ.

The rerun uses the record's resolved config as it is (method, dataset, seed, every option), its
own teacher store when its teachers are pinned (the same bits, ``leaderboards/teachers``), and
writes to a results folder of its own (a temporary one unless ``--results`` is given), never over
the record. What decides whether a CPU run reproduces bit for bit is compared and named when it
differs: the code revision, torch and oneDNN versions, the thread count and the CPU's kernels
(its ISA: AVX2, AVX-512, AMX). docs/protocol.md says what reproduces across machines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from dfbench.api.errors import DfbenchError

#: what decides bit-exactness of a CPU run, as the record's ``env`` names it
ENV_KEYS = ("git_commit", "torch", "torchvision", "numpy", "onednn", "torch_threads", "cpu", "isa", "device")


@dataclass
class Reproduction:
    record: dict
    rerun: dict
    tolerance: float
    metrics: dict = field(default_factory=dict)  # name -> (recorded, rerun)
    env_differences: dict = field(default_factory=dict)  # key -> (recorded, now)
    rerun_path: Path | None = None

    @property
    def max_difference(self) -> float:
        return max((abs(a - b) for a, b in self.metrics.values()), default=math.inf)

    @property
    def verdict(self) -> str:
        """bit-exact, within tolerance or different."""
        if all(a == b for a, b in self.metrics.values()):
            return "bit-exact"
        return "within tolerance" if self.max_difference <= self.tolerance else "different"

    def lines(self) -> list[str]:
        out = [f"{self.record['method']} on {self.record['dataset']}, seed {self.record['seed']}, config {self.record['config_hash']}: "
               f"{self.verdict}" + ("" if self.verdict == "bit-exact" else f" (largest difference {self.max_difference:.3g}, "
                                                                          f"tolerance {self.tolerance:g})")]
        for name, (a, b) in self.metrics.items():
            state = "identical" if a == b else f"{b - a:+.3g}"
            out.append(f"  {name:<8} recorded {a:.6f}  rerun {b:.6f}  {state}")
        teachers_a = {r: t.get("weights_sha256") for r, t in (self.record.get("teachers") or {}).items()}
        teachers_b = {r: t.get("weights_sha256") for r, t in (self.rerun.get("teachers") or {}).items()}
        if teachers_a and teachers_a != teachers_b:
            out.append("  teachers: other weights than the record's (trained again here, not pinned): " + ", ".join(
                f"{r} {str(teachers_a.get(r))[:12]} -> {str(teachers_b.get(r))[:12]}" for r in sorted(teachers_a)))
        elif teachers_a:
            out.append("  teachers: the record's own weights, bit for bit")
        if self.env_differences:
            out.append("  differs from the record's run: " + "; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in self.env_differences.items()))
        else:
            out.append("  same code, versions, threads and CPU kernels as the record's run")
        if self.rerun_path is not None:
            out.append(f"  rerun record: {self.rerun_path}")
        return out


def reproduce(record_path: Path, *, results: Path | None = None, tolerance: float = 0.0, cache_dir: Path | None = None,
              device: str | None = None, reporter=None) -> Reproduction:
    """Rerun the record at ``record_path`` (see the module's docstring)."""
    import tempfile

    from dfbench.app.records import ResultStore
    from dfbench.app.runner import RunRequest, run

    record_path = Path(record_path)
    if not record_path.is_file():
        raise DfbenchError(f"No record at {record_path}. Give the path of a run record (a .json file beside its run folder).")
    record, problem = ResultStore(record_path.parent).read(record_path)
    if record is None:
        raise DfbenchError(f"{record_path} cannot be reproduced: {problem or 'it is not a dfbench run record'}.")
    if record.get("status") != "completed":
        raise DfbenchError(f"{record_path} is a {record.get('status')} run: only a completed record has metrics to reproduce.")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise DfbenchError(f"--tolerance must be a number of at least 0, got {tolerance}.")
    config = {k: v for k, v in record["config"].items() if k not in ("method", "dataset", "seed")}
    if device is not None:
        config.pop("device", None)
    tmp = None
    if results is None:
        tmp = tempfile.TemporaryDirectory(prefix="dfbench-reproduce-")
        results = Path(tmp.name)
    try:
        req = RunRequest(method=record["method"], dataset=record["dataset"], seed=record["seed"], config=config, device=device,
                         results=Path(results), cache_dir=cache_dir, force=True)
        outcome = run(req, reporter) if reporter is not None else run(req)
        rerun = outcome.record
        if rerun.get("config_hash") != record["config_hash"]:
            raise DfbenchError(f"The rerun resolved to config {rerun.get('config_hash')}, not the record's {record['config_hash']}: "
                               "this dfbench resolves the record's config otherwise (another version's defaults).")
        keys = [k for k in record["metrics"] if isinstance(record["metrics"][k], (int, float)) and k in (rerun.get("metrics") or {})]
        metrics = {k: (float(record["metrics"][k]), float(rerun["metrics"][k])) for k in keys}
        env_a, env_b = record.get("env") or {}, rerun.get("env") or {}
        diffs = {k: (env_a.get(k), env_b.get(k)) for k in ENV_KEYS if k in env_a and env_a.get(k) != env_b.get(k)}
        return Reproduction(record, rerun, tolerance, metrics, diffs, None if tmp is not None else outcome.path)
    finally:
        if tmp is not None:
            tmp.cleanup()
