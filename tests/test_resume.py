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
