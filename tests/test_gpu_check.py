"""benchmarks/gpu_check.py: the GPU check runs green in --dry mode, and its machinery (time limits,
records, exit statuses) does what the table claims."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


gpu_check = _module()


def test_limits_fit_the_nine_minute_budget():
    assert sum(gpu_check.LIMITS.values()) < 9 * 60
    assert set(gpu_check.LIMITS) == {
        "cuda-tests", "bench-eval", "bench-train", "dfsbir-paper", "classifier-only-paper", "dfsbir-pretrained",
        "regime-224", "ddp-1gpu",
    }


def test_regime_readouts_are_read_from_the_diagnosis_lines():
    text = """classifier-only record x.json: sketchy, seed 0, ...
  0.3679  classifier-only: each side its own teacher
  0.0495  the photo teacher for both
  0.0295  the sketch teacher for both
  0.1150  avg-weights: averaged weights and BatchNorm statistics
  0.1424  averaged weights, each side its own teacher's statistics
"""
    assert gpu_check.parse_readouts(text) == {
        "classifier-only": 0.3679, "avg-weights": 0.1150, "photo teacher for both": 0.0495, "sketch teacher for both": 0.0295,
    }
    assert "avg-weights" not in gpu_check.parse_readouts(text.replace("avg-weights: averaged", "averaged"))


def test_the_regime_step_skips_without_the_data_and_does_not_fail_the_check(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "find_sketchy_data", lambda: None)
    result = gpu_check.Check("dry", tmp_path, {}).regime()
    assert result.status == "skip" and result.optional and "sketchy-mini" in result.detail


def test_a_step_past_its_limit_is_killed_with_its_children(tmp_path):
    # the child starts a grandchild that would outlive it; the whole process group must go
    marker = tmp_path / "grandchild-finished"
    grandchild = f"import time; time.sleep(4); open({str(marker)!r}, 'w')"
    code = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(60)"
    start = time.perf_counter()
    out = gpu_check.run_limited([sys.executable, "-c", code], 1.0, {}, tmp_path / "log.txt")
    assert out.returncode is None
    assert time.perf_counter() - start < 10
    time.sleep(4.5)
    assert not marker.exists()


def test_exit_status_output_and_peak_memory_are_reported(tmp_path):
    code = "import sys, time; x = bytearray(64 * 2**20); x[::4096] = b'1' * len(x[::4096]); print('hello'); time.sleep(0.6); sys.exit(3)"
    out = gpu_check.run_limited([sys.executable, "-c", code], 30, {}, tmp_path / "log.txt")
    assert out.returncode == 3
    assert "hello" in out.output
    assert out.peak_rss_mib > 64


def test_records_must_be_completed_and_finite(tmp_path):
    folder = tmp_path / "shapes" / "dfsbir"
    folder.mkdir(parents=True)
    metrics = {"mAP@all": 0.5, "mAP@200": 0.5, "P@100": float("nan"), "P@200": 0.4}
    (folder / "abc-s0.json").write_text(json.dumps({"status": "completed", "metrics": metrics}))
    _, problem = gpu_check.read_record(tmp_path, "dfsbir")
    assert problem and "P@100" in problem
    metrics["P@100"] = 0.3
    (folder / "abc-s0.json").write_text(json.dumps({"status": "completed", "metrics": metrics}))
    record, problem = gpu_check.read_record(tmp_path, "dfsbir")
    assert problem is None and record["metrics"]["P@100"] == 0.3
    _, problem = gpu_check.read_record(tmp_path, "classifier-only")
    assert "found 0" in problem


@pytest.mark.parametrize("method", ["dfsbir", "classifier-only"])
def test_the_gpu_runs_resolve_to_the_paper_profile_at_224(method, tmp_path):
    """The GPU sizes are only run on a GPU: at least their --set keys must exist and resolve here."""
    import yaml

    check = gpu_check.Check("gpu", tmp_path, {})
    cmd = check._run_cmd(method, tmp_path / "results") + ["--print-config"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = yaml.safe_load(proc.stdout)
    assert config["profile"] == "paper" and config["device"] == "cuda" and config["data"]["image_size"] == 224
    assert config["teachers"]["arch"] == "resnet34" and config["perf"]["amp"] == "bf16"
    if method == "dfsbir":
        assert config["params"]["rounds"] == 3 and config["params"]["batch_size"] == 64


def test_gpu_memory_is_the_peak_above_the_level_before_the_step(tmp_path):
    class FakeCuda:
        used = iter([1000, 1000, 5000 * gpu_check.MIB, 3000 * gpu_check.MIB] + [1000] * 1000)

        def mem_get_info(self, index):
            return 10**12 - next(self.used), 10**12

    sampler = gpu_check.MemorySampler(gpu=False)
    sampler._torch = type("T", (), {"cuda": FakeCuda()})()
    sampler.idle_gpu = sampler.peak_gpu = sampler._gpu_used()
    for _ in range(4):
        sampler.sample()
    assert round(sampler.peak_gpu_mib) == 5000


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message shown without CUDA")
def test_without_cuda_the_check_says_so_and_exits_2(capsys):
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert "No CUDA device" in err and "--dry" in err


@pytest.mark.slow
def test_dry_run_is_green_and_writes_its_table(tmp_path):
    """Every step of the GPU check, on the CPU at the smoke profile (about 90 s on 2 busy cores)."""
    out_json, out_md = tmp_path / "check.json", tmp_path / "check.md"
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry", "--out", str(out_json), "--out", str(out_md)],
        capture_output=True, text=True, timeout=400, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    report = json.loads(out_json.read_text())
    assert report["passed"] and report["mode"] == "dry"
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == list(gpu_check.LIMITS)
    for step in steps.values():
        assert step["status"] == "pass" or (step["name"] == "regime-224" and gpu_check.find_sketchy_data() is None), step
        assert step["seconds"] <= step["limit_s"]
        assert step["peak_rss_mib"] > 50
    assert "rerun identical" in steps["dfsbir-paper"]["figures"]
    assert "= single process" in steps["ddp-1gpu"]["figures"]
    assert "img/s" in steps["bench-train"]["figures"]
    md = out_md.read_text()
    assert md.startswith("# dfbench GPU check (dry): PASS") and "| ddp-1gpu | PASS |" in md
    assert "PASS: 8/8 steps passed" in proc.stdout or (
        gpu_check.find_sketchy_data() is None and "PASS: 7/8 steps passed" in proc.stdout)
    assert "weights " in steps["dfsbir-pretrained"]["figures"] and "32 px" in steps["dfsbir-pretrained"]["figures"]
    if gpu_check.find_sketchy_data() is not None:
        assert "32 px: classifier-only" in steps["regime-224"]["figures"] and "avg-weights" in steps["regime-224"]["figures"]
    assert not (tmp_path / "gpu-check.md").exists()  # an explicit --out replaces the default files
