"""CPU execution under contention (issue 31): OpenMP threads sleep while they wait unless the user
chose otherwise, which changes no number; a busy machine is noted; shards side by side on one
machine share its cores. Timings are measured by benchmarks/bench_contention.py, not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

from dfbench.app.shards import ShardSeat
from dfbench.api import perf


def test_wait_policy_default_is_set_only_when_the_user_chose_nothing(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as if torch were not loaded yet
    env = {}
    assert perf.set_env_defaults(env) is True and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}):
        env = dict(chosen)
        assert perf.set_env_defaults(env) is False and env == chosen


def test_wait_policy_is_left_alone_once_torch_is_loaded():
    import torch  # noqa: F401

    env = {}
    assert perf.set_env_defaults(env) is False and env == {}


def _python(code: str, **env) -> str:
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_dfbench_sets_passive_before_torch_and_respects_the_user():
    code = "import os, sys, dfbench; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    assert _python(code) == "PASSIVE False"
    assert _python(code, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE False"
    assert _python("import torch, os, dfbench; print(os.environ.get('OMP_WAIT_POLICY'))") == "None"


def _metrics(tmp_path, name: str, **env) -> dict:
    results = tmp_path / name
    cmd = [sys.executable, "-m", "dfbench", "run", "--method", "classifier-only", "--profile", "smoke", "--device", "cpu", "--quiet",
           "--results", str(results), "--cache-dir", str(tmp_path / f"cache-{name}"), "--set", "perf.threads=2",
           "--set", "data.options.train_per_class=24", "--set", "data.options.test_per_class=12"]
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    out = subprocess.run(cmd, capture_output=True, text=True, env={**full, **env}, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    [path] = [p for p in results.rglob("*.json") if p.parent.parent.parent == results]
    rec = json.loads(path.read_text())
    assert rec["env"]["torch_threads"] == 2
    return {"metrics": rec["metrics"], "teachers": {r: t["weights_sha256"] for r, t in rec["teachers"].items()}}


def test_the_wait_policy_changes_no_number(tmp_path):
    """Two threads, teachers trained from scratch: spinning and sleeping threads give the same bits."""
    passive = _metrics(tmp_path, "passive", OMP_WAIT_POLICY="PASSIVE")
    active = _metrics(tmp_path, "active", OMP_WAIT_POLICY="ACTIVE")
    assert passive == active


def test_busy_note_only_when_the_load_is_above_the_cores():
    assert perf.busy_note(2, cores=2, load=1.9) is None
    note = perf.busy_note(1, cores=2, load=4.2)
    assert note.startswith("Note: the machine is busy (load average 4.2 on 2 cores)") and "1 torch thread " in note


def test_shard_seats_count_live_shards_and_share_the_cores(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with ShardSeat(tmp_path) as mine:
        assert mine.seats() == 1 and mine.threads(cores=8) == 8
        (mine.folder / str(os.getppid())).write_text("x")  # a second shard, alive
        (mine.folder / str(dead.pid)).write_text("x")  # a stale seat: its process is gone
        assert mine.seats() == 2 and mine.threads(cores=8) == 4 and mine.threads(cores=1) == 1
        assert not (mine.folder / str(dead.pid)).exists()
    assert not mine.path.exists()  # the seat is given back


def test_a_shard_beside_another_takes_half_the_cores(tmp_path, monkeypatch):
    from dfbench.app.library import run_suite

    cache = tmp_path / "cache"
    other = ShardSeat(cache, pid=os.getppid())  # another shard of the machine, alive
    other.__enter__()
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    try:
        done = run_suite("smoke", methods=["classifier-only"], shard="1/2", results=tmp_path / "r", cache_dir=cache, device="cpu")
    finally:
        other.__exit__(None, None, None)
    paths = [r.path for r in done.runs if r.status == "completed"]
    assert paths, [(r.status, r.error) for r in done.runs]
    for path in paths:
        rec = json.loads(path.read_text())
        assert rec["env"]["torch_threads"] == 2 and rec["config"]["perf"]["threads"] == 2


@pytest.mark.parametrize("threads", [1])
def test_a_shard_keeps_threads_set_in_its_config(tmp_path, monkeypatch, threads):
    from dfbench.app import suites
    from dfbench.app.library import run_suite
    from dfbench.api.plugins import registry

    suite_file = tmp_path / "s.yaml"
    suite_file.write_text("profile: smoke\nseeds: [0, 1]\ndatasets: [shapes]\nmethods: [classifier-only]\n"
                          f"set: {{perf.threads: {threads}, data.options.train_per_class: 24, data.options.test_per_class: 12}}\n")
    spec = suites.load_suite(suite_file, registry("methods").names())
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    done = run_suite(spec, shard="1/2", results=tmp_path / "r", cache_dir=tmp_path / "cache", device="cpu")
    [run] = done.runs
    rec = json.loads(run.path.read_text())
    assert rec["config"]["perf"]["threads"] == threads == rec["env"]["torch_threads"]
