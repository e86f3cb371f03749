"""Checkpoint and resume: a run killed with SIGKILL resumes and ends with the uninterrupted metrics."""

import json
import os
import signal
import subprocess
import sys
import time

SETS = [
    "data.options.train_per_class=24", "data.options.test_per_class=12",
    "params.rounds=40", "params.log_every=4", "checkpoint_every=4",
]


def _cmd(results):
    cmd = [sys.executable, "-m", "dfbench", "run", "--quiet", "--method", "dfsbir", "--profile", "smoke", "--device", "cpu", "--results", str(results)]
    for s in SETS:
        cmd += ["--set", s]
    return cmd


def _record(results):
    [path] = [p for p in results.rglob("*.json") if p.parent.name == "dfsbir"]
    return json.loads(path.read_text())


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # uninterrupted reference (also trains and caches the teachers)
    subprocess.run(_cmd(tmp_path / "ref"), check=True, env=env, capture_output=True)
    reference = _record(tmp_path / "ref")

    results = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(results), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    ckpts = []
    while time.time() < deadline and proc.poll() is None:
        ckpts = list(results.rglob("checkpoint.pt"))
        if ckpts:
            break
        time.sleep(0.05)
    assert ckpts, "no checkpoint was written before the run ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not [p for p in results.rglob("*.json") if p.parent.name == "dfsbir"], "a killed run must leave no record"

    out = subprocess.run(_cmd(results), check=True, env=env, capture_output=True, text=True)
    resumed = _record(results)
    assert resumed["status"] == "completed"
    assert resumed.get("resumed_from_round", 0) >= 4, out.stderr
    assert resumed["metrics"] == reference["metrics"]
    assert not list(results.rglob("checkpoint.pt")), "the checkpoint is removed once the record is written"


def test_bench_killed_midway_completes_without_redoing_finished_runs(tmp_path):
    """SIGKILL 'dfbench bench' once its first run has a record; the same command then finishes the
    grid, leaving the finished record untouched."""
    suite = tmp_path / "grid.yaml"
    suite.write_text(
        "profile: smoke\nseeds: [0, 1]\ndatasets: [shapes]\nruns:\n"
        "  - {method: classifier-only}\n"
        "  - {method: dfsbir, set: {params.rounds: 30}}\n"
    )
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "dfbench", "bench", str(suite), "--quiet", "--results", str(results), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    first = []
    while time.time() < deadline and proc.poll() is None:
        first = [p for p in results.rglob("*.json") if p.name != "split.json"]
        if first:
            break
        time.sleep(0.05)
    assert first and proc.poll() is None, "the grid ended before it could be interrupted"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p: p.read_bytes() for p in results.rglob("*.json") if p.name != "split.json"}
    assert 1 <= len(done) < 4
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    n = sum(json.loads(raw)["status"] == "completed" for raw in done.values())
    assert f"{4 - n} completed, {n} skipped, 0 failed" in out.stderr + out.stdout
    records = {p: json.loads(p.read_text()) for p in results.rglob("*.json") if p.name != "split.json"}
    assert len(records) == 4 and all(r["status"] == "completed" for r in records.values())
    for path, raw in done.items():
        if json.loads(raw)["status"] == "completed":
            assert path.read_bytes() == raw, f"{path} was run again"
