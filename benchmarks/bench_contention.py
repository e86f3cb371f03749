"""CPU execution settings under contention: teacher training and dfsbir rounds at 1 and N threads,
OpenMP spin and passive waiting, on idle cores and with a competing load the script runs itself.

    python benchmarks/bench_contention.py                    # the full table (about 5-8 minutes on 2 cores)
    python benchmarks/bench_contention.py --load 4 --epochs 2 --rounds 2

Every configuration runs in a fresh subprocess, because libgomp (the OpenMP runtime behind torch's
CPU kernels) reads ``OMP_WAIT_POLICY`` once, when torch is imported:

- ``spin``: libgomp's own default (nothing set; the worker imports torch before dfbench, so
  dfbench's default does not apply): a thread that waits for the others spins for a while before
  it sleeps.
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE``: waiting threads sleep at once (dfbench's default since
  issue 31, see dfbench/api/perf.py).
- ``spincount=N``: ``GOMP_SPINCOUNT=N``: a shorter spin than libgomp's default of 300,000.

The load is ``--load`` processes that each spin a Python loop (default: one per core, which puts
the load average near twice the core count); they are started before the loaded rows, stopped in
a ``finally`` block after them, and each one ends itself after ``--load-limit`` seconds in any
case. A row's timings are: ``teacher`` (``--epochs`` epochs of the cpu profile's photo teacher on
the shapes data, the work of ``dfbench run --method classifier-only``) and ``dfsbir`` (seconds per
round of the cpu profile, ``--rounds`` timed rounds after one warm-up round). The table gives each
row's ratio to the best row of the same load, and the one-minute load average at the row's start.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("spin", "passive", "spincount=10000")


def _busy(seconds: float) -> None:
    """One unit of competing load: spin the interpreter for ``seconds`` (then end by itself)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def start_load(n: int, seconds: float) -> list[subprocess.Popen]:
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_contention as b; b._busy({seconds})"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def worker(threads: int, epochs: int, rounds: int) -> dict:
    """Run in the subprocess: time the teacher training and the dfsbir rounds, return the figures."""
    import torch  # first, so that the environment the parent set (and nothing else) decides the wait policy

    torch.set_num_threads(threads)
    sys.path.insert(0, str(Path(__file__).parent))
    import tempfile

    from bench_train import timed_rounds
    from dfbench.api.datasets import DatasetOptions
    from dfbench_datasets.shapes import ShapesDataset
    from dfbench_teachers.common import build_teacher, train_teacher
    from dfbench_teachers.options import TeacherOptions

    tcfg = {**TeacherOptions.defaults(), "epochs": epochs}
    bench = ShapesDataset().load(DatasetOptions(image_size=32, cache_dir=Path(tempfile.mkdtemp()), extra={"train_per_class": 108, "test_per_class": 1}))
    torch.manual_seed(0)
    model = build_teacher("photo", tcfg, bench.num_classes, 32)
    t = time.perf_counter()
    train_teacher(model, "photo", bench, tcfg, torch.device("cpu"), seed=0)
    teacher = time.perf_counter() - t
    sec, _ = timed_rounds("cpu", torch.device("cpu"), ["checkpoint_every=0", "curve_eval_every=0", "params.warmup_rounds=0"], rounds, 1)
    return {"teacher": teacher, "dfsbir": sec, "threads": torch.get_num_threads(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}


def run_row(threads: int, policy: str, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif policy.startswith("spincount="):
        env["GOMP_SPINCOUNT"] = policy.partition("=")[2]
    load = os.getloadavg()[0]
    cmd = [sys.executable, __file__, "--worker", str(threads), "--epochs", str(args.epochs), "--rounds", str(args.rounds)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.row_limit, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"worker failed ({threads} threads, {policy}):\n{out.stderr[-2000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "policy": policy, "loadavg": load}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="N, the many-thread rows [default: the core count]")
    ap.add_argument("--load", type=int, default=os.cpu_count(), help="busy processes of the loaded rows [default: one per core]")
    ap.add_argument("--epochs", type=int, default=3, help="teacher epochs per row (the cpu profile trains 12 per teacher)")
    ap.add_argument("--rounds", type=int, default=3, help="timed dfsbir rounds per row")
    ap.add_argument("--row-limit", type=float, default=240, help="seconds after which a row is abandoned")
    ap.add_argument("--policy", dest="policies", action="append", default=[],
                    help="spin | passive | spincount=N (repeatable) [default: spin, passive, spincount=10000]")
    ap.add_argument("--skip-idle", action="store_true", help="only the loaded rows")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.epochs, args.rounds)))
        return

    rows = []
    combos = [(t, p) for t in sorted({1, args.threads}) for p in (args.policies or POLICIES)]
    print(f"{os.cpu_count()} cores; teacher: {args.epochs} epochs of the photo teacher; dfsbir: s/round over {args.rounds} rounds")
    for loaded in ([True] if args.skip_idle else [False, True]):
        procs = start_load(args.load, len(combos) * args.row_limit) if loaded else []
        try:
            if loaded:
                time.sleep(5)  # let the load average begin to rise
            for t, p in combos:
                r = run_row(t, p, args)
                r["load"] = f"{args.load} busy" if loaded else "idle"
                rows.append(r)
                print(f"  {r['load']:<8} {t} threads {p:<8} teacher {r['teacher']:7.2f} s  dfsbir {r['dfsbir']:6.3f} s/round  (load avg {r['loadavg']:.2f})", flush=True)
        finally:
            stop_load(procs)

    print()
    print("| load | threads | wait policy | load avg at start | teacher s | x best | dfsbir s/round | x best |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        same = [x for x in rows if x["load"] == r["load"]]
        bt = min(x["teacher"] for x in same)
        bd = min(x["dfsbir"] for x in same)
        print(f"| {r['load']} | {r['threads']} | {r['policy']} | {r['loadavg']:.2f} | {r['teacher']:.2f} | {r['teacher'] / bt:.2f} "
              f"| {r['dfsbir']:.3f} | {r['dfsbir'] / bd:.2f} |")


if __name__ == "__main__":
    main()
