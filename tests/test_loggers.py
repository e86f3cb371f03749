"""Run events and loggers (issue 32): typed events reach every logger of a run, the built-in
backends write what they say (read back with their own readers), loggers never change a run."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
from click.testing import CliRunner
from conftest import error_paragraph

from dfbench.app.cli import cli

SMOKE = ["--profile", "smoke", "--device", "cpu", "--quiet", "--set", "data.options.train_per_class=24",
         "--set", "data.options.test_per_class=12"]
DFSBIR = ["--method", "dfsbir", "--set", "params.rounds=4", "--set", "params.log_every=2"]


def _record(results):
    [path] = [p for p in results.rglob("*.json") if p.parent.parent.parent == results]
    return path, json.loads(path.read_text())


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason='needs pip install "dfbench[tensorboard]"')
def test_a_dfsbir_runs_curves_reach_tensorboard_and_jsonl(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = tmp_path / "r"
    res = CliRunner().invoke(cli, ["run", *DFSBIR, "--results", str(results), *SMOKE, "--logger", "tensorboard", "--logger", "jsonl"])
    assert res.exit_code == 0, res.output
    path, rec = _record(results)
    run_dir = results / rec["artifacts"]
    with open(run_dir / "curves.csv", newline="") as fh:
        curves = list(csv.DictReader(fh))
    assert curves, "a dfsbir run logs curves"
    # TensorBoard, read with its own reader
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "curves/align" in tags and "metrics/mAP@all" in tags
    assert [e.step for e in acc.Scalars("curves/align")] == [int(r["round"]) for r in curves if r.get("align")]
    assert acc.Scalars("curves/align")[-1].value == pytest.approx(float(curves[-1]["align"]), rel=1e-6)
    assert acc.Scalars("metrics/mAP@all")[-1].value == pytest.approx(rec["metrics"]["mAP@all"], rel=1e-6)
    assert "config" in acc.Tags()["tensors"] or "config/text_summary" in acc.Tags()["tensors"]
    # the JSON lines: one start, one point per curve row, one finish with the record's metrics
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds == ["run_started", *["curve_point"] * len(curves), "run_finished"]
    assert events[0]["config"]["method"] == "dfsbir" and events[0]["run_id"] == rec["run_id"]
    assert events[-1]["metrics"] == rec["metrics"] and events[-1]["record"] == str(path)


def test_loggers_change_no_config_hash_and_no_number(tmp_path):
    results = tmp_path / "r"
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--results", str(results), *SMOKE])
    assert res.exit_code == 0, res.output
    _, plain = _record(results)
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--results", str(results), *SMOKE, "--logger", "jsonl"])
    assert res.exit_code == 0, res.output
    _, again = _record(results)  # the same run: done already, one record
    assert again["config_hash"] == plain["config_hash"]
    other = tmp_path / "r2"
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--results", str(other), *SMOKE, "--logger", "jsonl"])
    assert res.exit_code == 0, res.output
    _, logged = _record(other)
    assert logged["config_hash"] == plain["config_hash"] and logged["metrics"] == plain["metrics"]
    assert logged["config"]["loggers"] == ["jsonl"]


def test_an_unknown_logger_is_a_one_paragraph_error_before_any_work(tmp_path):
    results = tmp_path / "r"
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--results", str(results), *SMOKE, "--logger", "jsnl"])
    assert res.exit_code == 2, res.output
    error = error_paragraph(res.output)
    assert "Unknown run logger 'jsnl'" in error and "jsonl" in error
    assert not results.exists() or not any(p.suffix == ".json" for p in results.rglob("*"))


@pytest.mark.parametrize("logger,package", [("tensorboard", "tensorboard"), ("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_missing_backend_names_the_extra(tmp_path, monkeypatch, logger, package):
    import dfbench_loggers.loggers as mod

    real = importlib.util.find_spec
    monkeypatch.setattr(mod.importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    results = tmp_path / "r"
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--results", str(results), *SMOKE, "--logger", logger])
    assert res.exit_code == 2, res.output
    assert f'pip install "dfbench[{logger}]"' in error_paragraph(res.output)
    assert not results.exists() or not any(p.suffix == ".json" for p in results.rglob("*"))


def test_a_logger_that_fails_is_dropped_and_the_run_goes_on(tmp_path):
    from dfbench.api.loggers import RunLogger
    from dfbench.api.plugins import get_plugins, reset_plugins

    calls = []

    class Boom(RunLogger):
        def run_started(self, event):
            calls.append("started")

        def curve_point(self, event):
            calls.append("point")
            raise RuntimeError("tracker down")

    reset_plugins()
    try:
        get_plugins().registry("loggers").add("boom", Boom, plugin="test")
        results = tmp_path / "r"
        res = CliRunner().invoke(cli, ["run", *DFSBIR, "--results", str(results), *SMOKE, "--logger", "boom"])
        assert res.exit_code == 0, res.output
        _, rec = _record(results)
        assert rec["status"] == "completed"
        assert calls == ["started", "point"]  # dropped after its first failure
    finally:
        reset_plugins()


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason='needs pip install "dfbench[mlflow]"')
def test_a_dfsbir_run_reaches_mlflow_params_metrics_and_artifacts(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    results = tmp_path / "r"
    res = CliRunner().invoke(cli, ["run", *DFSBIR, "--results", str(results), *SMOKE, "--logger", "mlflow"])
    assert res.exit_code == 0, res.output
    path, rec = _record(results)
    with open(results / rec["artifacts"] / "curves.csv", newline="") as fh:
        curves = list(csv.DictReader(fh))
    client = MlflowClient(tracking_uri=(results / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("dfbench/shapes")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["dfbench.run_id"] == rec["run_id"]
    assert run.data.params["method"] == "dfsbir" and run.data.params["params.rounds"] == "4"
    history = client.get_metric_history(run.info.run_id, "align")
    assert [m.step for m in history] == [int(r["round"]) for r in curves if r.get("align")]
    assert history[-1].value == pytest.approx(float(curves[-1]["align"]))
    assert run.data.metrics["test.mAP_at_all"] == pytest.approx(rec["metrics"]["mAP@all"])
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert path.name in names and "curves.csv" in names


def _wandb_records(path):
    """The records of a W&B run file: its format is LevelDB's log (32 KiB blocks of chunks, each
    with a 7-byte header: CRC-32, length, type) after a 7-byte ':W&B' header; each record is W&B's
    own protobuf ``Record``, parsed here with the wandb package's classes."""
    import struct
    import zlib

    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, out, parts = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the block's tail is padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        assert zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF == crc, f"a damaged chunk at byte {pos}"
        pos += 7 + length
        parts += chunk
        if kind in (1, 4):  # FULL or LAST: a record is complete
            rec = pb.Record()
            rec.ParseFromString(parts)
            out.append(rec)
            parts = b""
    return out


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason='needs pip install "dfbench[wandb]"')
def test_a_dfsbir_run_reaches_wandb_offline_config_history_summary_and_files(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default: nothing leaves the machine
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    results = tmp_path / "r"
    res = CliRunner().invoke(cli, ["run", *DFSBIR, "--results", str(results), *SMOKE, "--logger", "wandb"])
    assert res.exit_code == 0, res.output
    path, rec = _record(results)
    with open(results / rec["artifacts"] / "curves.csv", newline="") as fh:
        curves = list(csv.DictReader(fh))
    [run_dir] = (results / rec["artifacts"] / "wandb").glob("offline-run-*")
    [run_file] = run_dir.glob("run-*.wandb")
    records = _wandb_records(run_file)
    kinds = [r.WhichOneof("record_type") for r in records]
    [run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "dfbench-shapes" and run.display_name == f"dfsbir {rec['run_id']}"
    config = {i.key: json.loads(i.value_json) for i in run.config.update}  # the config travels in the run record
    assert config["method"] == "dfsbir" and config["params"]["rounds"] == 4
    history = [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    aligned = [(h["_step"], h["align"]) for h in history if "align" in h]
    assert [s for s, _ in aligned] == [int(r["round"]) for r in curves if r.get("align")]
    assert aligned[-1][1] == pytest.approx(float(curves[-1]["align"]))
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.summary.update})
    assert summary["test/mAP@all"] == pytest.approx(rec["metrics"]["mAP@all"]) and summary["dfbench/status"] == "completed"
    assert (run_dir / "files" / path.name).is_file() and (run_dir / "files" / "curves.csv").is_file()
    assert "exit" in kinds and [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [0]
