"""End-to-end runs on the embedded dataset: records, skipping, determinism, bad input."""

import json
import math

import pytest
from click.testing import CliRunner

from dfbench.app.cli import cli
from dfbench.app.records import METRIC_KEYS

# a tiny shapes set keeps every run here to seconds
TINY = ["data.options.train_per_class=24", "data.options.test_per_class=12"]


def run_cli(*args, results):
    argv = ["run", "--quiet", "--results", str(results), *args]
    return CliRunner().invoke(cli, argv, catch_exceptions=False)


def _sets(*items):
    out = []
    for item in TINY + list(items):
        out += ["--set", item]
    return out


def _records(results):
    return sorted(results.rglob("*.json"))


def _run_records(results):
    return [p for p in _records(results) if p.parent.name == "dfsbir"]


def test_smoke_run_writes_a_complete_record(tmp_path):
    res = run_cli("--method", "dfsbir", "--profile", "smoke", *_sets(), results=tmp_path)
    assert res.exit_code == 0, res.output
    [path] = _run_records(tmp_path)
    rec = json.loads(path.read_text())
    assert rec["status"] == "completed"
    assert (rec["method"], rec["dataset"], rec["seed"], rec["profile"]) == ("dfsbir", "shapes", 0, "smoke")
    assert set(rec["metrics"]) == set(METRIC_KEYS)
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in rec["metrics"].values())
    assert path.name == f"{rec['config_hash']}-s0.json" and rec["run_id"] == path.stem
    assert rec["config"]["params"]["weights"]["adversarial"] == 1.0
    assert set(rec["teachers"]) == {"unified", "modality"}
    assert 0.0 <= rec["teachers"]["unified"]["accuracy"]["all"] <= 1.0
    assert {"data", "teachers", "train", "eval", "total", "cpu"} <= set(rec["timing"])
    assert 0.0 < rec["timing"]["cpu"]  # the process's CPU seconds, what a CPU-hour budget counts
    assert rec["env"]["torch"] and rec["env"]["device"] == "cpu"
    assert rec["started_at"] and rec["finished_at"]
    curves = (path.parent / rec["run_id"] / "curves.csv").read_text().splitlines()
    assert curves[0].startswith("round,teacher images,align") and len(curves) > 1
    # a second identical run is skipped; --force runs again
    again = run_cli("--method", "dfsbir", "--profile", "smoke", *_sets(), results=tmp_path)
    assert again.exit_code == 0 and "existed" in again.output
    assert json.loads(path.read_text())["finished_at"] == rec["finished_at"]

@pytest.mark.slow

def test_same_seed_same_metrics_on_cpu(tmp_path):
    a = run_cli("--method", "dfsbir", "--profile", "smoke", "--device", "cpu", *_sets(), results=tmp_path / "a")
    b = run_cli("--method", "dfsbir", "--profile", "smoke", "--device", "cpu", *_sets(), results=tmp_path / "b")
    assert a.exit_code == 0 and b.exit_code == 0
    ra = json.loads(_run_records(tmp_path / "a")[0].read_text())
    rb = json.loads(_run_records(tmp_path / "b")[0].read_text())
    assert ra["metrics"] == rb["metrics"]

@pytest.mark.slow

def test_independent_variant_and_ablation(tmp_path):
    res = run_cli(
        "--method", "dfsbir", "--profile", "smoke",
        *_sets("params.variant=independent", "params.weights.class_alignment=0", "params.weights.modality=0"),
        results=tmp_path,
    )
    assert res.exit_code == 0, res.output
    rec = json.loads(_run_records(tmp_path)[0].read_text())
    assert set(rec["teachers"]) == {"photo", "sketch"}  # no modality teacher when its term is off
    assert "term/class_alignment" not in (tmp_path / "shapes" / "dfsbir" / rec["run_id"] / "curves.csv").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "dfsbri"], "Did you mean 'dfsbir'"),
        (["--method", "dfsbir", "--dataset", "shape"], "Did you mean 'shapes'"),
        (["--method", "dfsbir", "--profile", "fast"], "Unknown profile 'fast'"),
        (["--method", "dfsbir", "--set", "params.round=3"], "Unknown config key 'params.round'"),
        (["--method", "dfsbir", "--set", "params.weights.onehot=1"], "Unknown name 'onehot' in params.weights. Did you mean 'one_hot'"),
        (["--method", "dfsbir", "--dataset", "folder"], "--data-root"),
        (["--method", "dfsbir", "--dataset", "folder", "--data-root", "/nonexistent/dfbench"], "/nonexistent/dfbench"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph(tmp_path, args, message):
    res = CliRunner().invoke(cli, ["run", "--quiet", "--results", str(tmp_path), "--profile", "smoke", *args] if "--profile" not in args else ["run", "--quiet", "--results", str(tmp_path), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert not _records(tmp_path)


def test_invalid_yaml_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  rounds: [1,\n")
    res = CliRunner().invoke(cli, ["run", "--method", "dfsbir", "--config", str(bad), "--results", str(tmp_path / "r")])
    assert res.exit_code == 2 and "not valid YAML" in res.output and "Traceback" not in res.output

@pytest.mark.slow

def test_checkpoint_teachers_roundtrip_and_mismatch(tmp_path):
    # train teachers once through the trained loader, then feed its cached files to the checkpoint loader
    res = run_cli("--method", "dfsbir", "--profile", "smoke", *_sets(), results=tmp_path / "a")
    assert res.exit_code == 0, res.output
    rec = json.loads(_run_records(tmp_path / "a")[0].read_text())
    unified, modality = rec["teachers"]["unified"]["cache"], rec["teachers"]["modality"]["cache"]
    ok = run_cli(
        "--method", "dfsbir", "--profile", "smoke",
        *_sets("teachers.loader=checkpoint", f"teachers.checkpoints.unified={unified}", f"teachers.checkpoints.modality={modality}"),
        results=tmp_path / "b",
    )
    assert ok.exit_code == 0, ok.output
    rec_b = json.loads(_run_records(tmp_path / "b")[0].read_text())
    assert rec_b["teachers"]["unified"]["accuracy"] == rec["teachers"]["unified"]["accuracy"]
    wrong_arch = CliRunner().invoke(cli, [
        "run", "--quiet", "--method", "dfsbir", "--profile", "smoke", "--results", str(tmp_path / "c"),
        *_sets("teachers.loader=checkpoint", f"teachers.checkpoints.unified={unified}", f"teachers.checkpoints.modality={modality}", "teachers.width=8"),
    ])
    assert wrong_arch.exit_code == 2 and "does not fit the architecture" in wrong_arch.output
    missing = CliRunner().invoke(cli, [
        "run", "--quiet", "--method", "dfsbir", "--profile", "smoke", "--results", str(tmp_path / "d"),
        *_sets("teachers.loader=checkpoint"),
    ])
    assert missing.exit_code == 2 and "teachers.checkpoints." in missing.output

@pytest.mark.slow

def test_curve_monitoring_adds_test_map_and_changes_nothing_else(tmp_path):
    """curve_eval_every puts test mAP@all in the curves (and curves.png) without changing training:
    the metrics equal those of a run without it, bit for bit, and the config hash is the same."""
    from dfbench.api.progress import Reporter
    from dfbench.app.runner import RunRequest, execute_resolved, resolve_request

    out = {}
    for every in (0, 2):
        req = RunRequest(method="dfsbir", dataset="shapes", profile="smoke", seed=0, device="cpu",
                         overrides=["params.rounds=6", "params.log_every=2", "checkpoint_every=0", f"curve_eval_every={every}",
                                    "data.validation=null"],  # no validation split: the curves monitor test
                         results=tmp_path / f"e{every}")
        cfg, method = resolve_request(req)
        out[every] = execute_resolved(cfg, method, req, Reporter(enabled=False))
    assert out[2].record["metrics"] == out[0].record["metrics"]
    assert out[2].record["config_hash"] == out[0].record["config_hash"]
    csv_text = (out[2].path.parent / out[2].record["run_id"] / "curves.csv").read_text().splitlines()
    header, rows = csv_text[0].split(","), [line.split(",") for line in csv_text[1:]]
    col = header.index("test mAP@all")
    assert header[0] == "round" and col == len(header) - 1  # losses first, the test metric last
    # round 0 (the untrained students: no teacher image spent, only the metric), then rounds 2, 4, 6
    assert header[1] == "teacher images" and float(rows[0][1]) == 0.0
    assert [int(r[0]) for r in rows] == [0, 2, 4, 6] and rows[0][2:col] == [""] * (col - 2)
    assert all(0.0 <= float(r[col]) <= 1.0 for r in rows)
    # the last monitored value is the run's own final metric (same students, same test split)
    assert float(rows[-1][col]) == pytest.approx(out[2].record["metrics"]["mAP@all"], abs=1e-12)
    assert "test mAP@all" not in (out[0].path.parent / out[0].record["run_id"] / "curves.csv").read_text()


def test_the_library_run_returns_a_typed_outcome(tmp_path):
    """dfbench.app.runner.run (what 'dfbench run' calls): the outcome says whether the run completed
    or failed, and a second call finds the completed record and skips."""
    from dfbench.app.runner import RunRequest, run

    req = RunRequest(method="classifier-only", profile="smoke", device="cpu", results=tmp_path,
                     overrides=["data.options.train_per_class=24", "data.options.test_per_class=12"])
    first = run(req)
    assert first.completed() and not first.failed() and first.status == "completed" and not first.skipped
    assert set(first.metrics) == set(METRIC_KEYS) and first.path.is_file()
    again = run(req)
    assert again.skipped and again.completed() and again.metrics == first.metrics
