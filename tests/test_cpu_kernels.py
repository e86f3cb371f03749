"""CPU kernels held below the CPU's own (``dfbench --cpu-kernels``, ``dfbench reproduce``): a record
made on a smaller CPU reruns with that CPU's kernels, and every record says which kernels ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import REPO, error_paragraph

from dfbench.app import cpu_kernels
from dfbench.app.cli import cli

SMOKE = ["--profile", "smoke", "--device", "cpu", "--quiet", "--set", "data.options.train_per_class=24",
         "--set", "data.options.test_per_class=12"]

x86 = pytest.mark.skipif(cpu_kernels.native_capability() is None, reason="CPU kernels are held on x86-64 Linux only")


def _dfbench(*args, env=None, cwd=None):
    """dfbench as its own process (the kernels are chosen before torch loads)."""
    environ = {k: v for k, v in os.environ.items() if k not in cpu_kernels.LIMIT_VARIABLES and k != "DFBENCH_CPU_KERNELS"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "dfbench.app.cli", *args], capture_output=True, text=True, env=environ,
                          cwd=cwd or REPO, timeout=600)


def _record(results):
    [path] = [p for p in results.rglob("*.json") if p.parent.parent.parent == results]
    return path


def test_a_record_made_on_a_smaller_cpu_is_rerun_with_its_kernels():
    native = "AVX512"
    assert cpu_kernels.for_record({"capability": "AVX2"}) in ("avx2", "native")
    original = cpu_kernels.native_capability
    try:
        cpu_kernels.native_capability = lambda: native
        assert cpu_kernels.for_record({"capability": "AVX2"}) == "avx2"
        assert cpu_kernels.for_record({"capability": "DEFAULT"}) == "default"
        assert cpu_kernels.for_record({"capability": "AVX512"}) == "native"  # the CPU's own
        assert cpu_kernels.for_record(None) == "native" and cpu_kernels.for_record({"capability": "SVE256"}) == "native"
        cpu_kernels.native_capability = lambda: "AVX2"
        assert cpu_kernels.for_record({"capability": "AVX512"}) == "native"  # larger kernels cannot be had
    finally:
        cpu_kernels.native_capability = original


@x86
def test_run_with_held_kernels_records_them(tmp_path):
    res = _dfbench("--cpu-kernels", "default", "run", "--method", "classifier-only", *SMOKE, "--results", str(tmp_path / "r"),
                   "--cache-dir", str(tmp_path / "c"))
    assert res.returncode == 0, res.stderr
    cpu = json.loads(_record(tmp_path / "r").read_text())["env"]["cpu"]
    assert cpu["capability"] == "DEFAULT"
    assert cpu["limits"] == cpu_kernels.LIMITS["DEFAULT"]


@x86
def test_reproduce_holds_the_kernels_at_the_records(tmp_path):
    res = _dfbench("run", "--method", "classifier-only", *SMOKE, "--results", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"))
    assert res.returncode == 0, res.stderr
    path = _record(tmp_path / "r")
    rec = json.loads(path.read_text())
    assert "limits" not in rec["env"]["cpu"]  # the CPU's own kernels: nothing held
    rec["env"]["cpu"]["capability"] = "DEFAULT"  # as a record made on a CPU without AVX2 says
    path.write_text(json.dumps(rec))
    res = _dfbench("reproduce", str(path), "-q", "--tolerance", "1", "--results", str(tmp_path / "again"),
                   "--cache-dir", str(tmp_path / "c2"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "CPU kernels held at the record's DEFAULT" in res.stdout, res.stdout
    rerun = json.loads(_record(tmp_path / "again").read_text())
    assert rerun["env"]["cpu"]["capability"] == "DEFAULT" and rerun["env"]["cpu"]["limits"]["ATEN_CPU_CAPABILITY"] == "default"


@x86
def test_kernels_that_cannot_be_had_are_a_one_paragraph_error():
    import torch

    running = torch.backends.cpu.get_cpu_capability()
    if running != "DEFAULT":  # torch is loaded in this process: its kernels are fixed
        res = CliRunner().invoke(cli, ["--cpu-kernels", "default", "list"])
        assert res.exit_code == 2
        assert "only be chosen before torch loads" in error_paragraph(res.output)
    res = _dfbench("--cpu-kernels", "avx9", "list")
    assert res.returncode == 2 and "avx9" in res.stderr and "Traceback" not in res.stderr
    if cpu_kernels.native_capability() == "DEFAULT":
        res = _dfbench("--cpu-kernels", "avx2", "list")
        assert res.returncode == 2 and "this CPU's are DEFAULT" in res.stderr


def _suite(tmp_path, kernels):
    suite = tmp_path / "held.yaml"
    suite.write_text(
        "profile: smoke\nseeds: [0]\ndatasets: [shapes]\n"
        + (f"cpu_kernels: {kernels}\n" if kernels is not None else "")
        + "set: {data.options.train_per_class: 24, data.options.test_per_class: 12}\n"
        "runs:\n  - {method: classifier-only, label: classifier-only}\n"
    )
    return suite


def test_a_suite_names_its_cpu_kernels_or_is_told_which_it_can(tmp_path):
    from dfbench.app import suites

    assert suites.load_suite(_suite(tmp_path, None), ["classifier-only"]).cpu_kernels == "native"
    assert suites.load_suite(_suite(tmp_path, "AVX2"), ["classifier-only"]).cpu_kernels == "avx2"
    res = CliRunner().invoke(cli, ["bench", "--suite", str(_suite(tmp_path, "avx1024")), "--dry-run"])
    assert res.exit_code == 2
    assert "'cpu_kernels'" in error_paragraph(res.output) and "native, avx2, default" in res.output


@x86
def test_bench_holds_the_kernels_a_suite_names_unless_the_command_chooses(tmp_path):
    suite = _suite(tmp_path, "default")
    res = _dfbench("bench", "--suite", str(suite), "--device", "cpu", "-q", "--results", str(tmp_path / "r"),
                   "--cache-dir", str(tmp_path / "c"))
    assert res.returncode == 0, res.stdout + res.stderr
    cpu = json.loads(_record(tmp_path / "r").read_text())["env"]["cpu"]
    assert cpu["capability"] == "DEFAULT" and cpu["limits"] == cpu_kernels.LIMITS["DEFAULT"]
    # the command's own choice wins, and says that the suite's records may have other teachers
    res = _dfbench("--cpu-kernels", "native", "bench", "--suite", str(suite), "--device", "cpu", "--results",
                   str(tmp_path / "r2"), "--cache-dir", str(tmp_path / "c"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "holds its CPU kernels at DEFAULT" in res.stderr
    assert "limits" not in json.loads(_record(tmp_path / "r2").read_text())["env"]["cpu"]
