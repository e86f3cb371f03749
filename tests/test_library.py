"""The library API (docs/api.md): ``dfbench.run``, ``dfbench.run_suite``, ``dfbench.load_results``;
the command line calls the same functions."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import REPO

import dfbench
from dfbench.api.errors import DfbenchError

TINY = {"data.options.train_per_class": 24, "data.options.test_per_class": 12}
METRICS = ("mAP@all", "mAP@200", "P@100", "P@200")


def _valid_record(path) -> bool:
    """A record by the schema's own rules, checked here without dfbench's reader: a JSON object of
    schema dfbench.run/1 with its identity, a known status, and finite metrics when completed."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return False
    if not isinstance(rec, dict) or rec.get("schema") != "dfbench.run/1":
        return False
    if not all(isinstance(rec.get(k), str) and rec[k] for k in ("dataset", "method", "config_hash", "status")):
        return False
    if type(rec.get("seed")) is not int or rec["status"] not in ("completed", "failed", "running"):
        return False
    metrics = rec.get("metrics") or {}
    if rec["status"] == "completed":
        return all(type(metrics.get(k)) in (int, float) and math.isfinite(metrics[k]) for k in METRICS)
    return True


def test_load_results_has_one_row_per_committed_record():
    folder = REPO / "leaderboards" / "records"
    files = sorted(folder.rglob("*.json"))
    valid = [p for p in files if _valid_record(p)]
    assert len(valid) > 100, f"only {len(valid)} committed records"
    frame = dfbench.load_results(folder)
    assert len(frame) == len(valid)
    assert sorted(frame["path"]) == sorted(str(p) for p in valid)
    for column in ("method", "dataset", "seed", "config_hash", "label", "suite", *METRICS, "config.params.rounds", "config.teachers.loader"):
        assert column in frame.columns, column
    # every row is its record: identity, metrics and a flattened config key
    first = json.loads(valid[0].read_text())
    [row] = frame[frame["path"] == str(valid[0])].to_dict("records")
    assert (row["method"], row["dataset"], row["seed"], row["config_hash"]) == (first["method"], first["dataset"], first["seed"], first["config_hash"])
    assert row["mAP@all"] == first["metrics"]["mAP@all"]
    assert row["config.teachers.loader"] == first["config"]["teachers"]["loader"]
    assert row["label"] == ((first.get("suite") or {}).get("label") or first["method"])


def test_load_results_of_nothing_and_of_a_missing_folder(tmp_path):
    empty = dfbench.load_results(tmp_path)
    assert len(empty) == 0 and {"method", "dataset", "seed", "config_hash"} <= set(empty.columns)
    with pytest.raises(DfbenchError, match="does not exist"):
        dfbench.load_results(tmp_path / "nowhere")


def test_import_dfbench_and_the_api_names_import_no_torch():
    code = ("import sys, dfbench; f = (dfbench.run, dfbench.run_suite, dfbench.load_results); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'pandas')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_config_as_a_dict_and_set_as_a_dict_resolve_like_the_command_line(tmp_path):
    from dfbench.app import library

    (tmp_path / "c.yaml").write_text("data:\n  options:\n    train_per_class: 24\n")
    from_file = library.resolved_config(method="dfsbir", profile="smoke", config=tmp_path / "c.yaml", set=["params.rounds=3"])
    from_dicts = library.resolved_config(method="dfsbir", profile="smoke", config={"data": {"options": {"train_per_class": 24}}},
                                         set={"params.rounds": 3})
    assert from_file == from_dicts
    assert from_dicts["params"]["rounds"] == 3 and from_dicts["data"]["options"]["train_per_class"] == 24
    with pytest.raises(DfbenchError, match="Did you mean 'dfsbir'"):
        library.resolved_config(method="dfsbri")


def test_run_returns_the_record_and_the_cli_makes_the_same_run(tmp_path):
    from dfbench.app.cli import cli

    results = tmp_path / "results"
    outcome = dfbench.run(method="classifier-only", dataset="shapes", profile="smoke", seed=0, set=TINY, results=results, device="cpu")
    record = outcome.record
    assert record["status"] == "completed" and not outcome.skipped
    assert record["method"] == "classifier-only" and record["dataset"] == "shapes" and record["seed"] == 0
    assert set(METRICS) <= set(record["metrics"]) and all(0.0 <= record["metrics"][k] <= 1.0 for k in METRICS)
    assert outcome.path.is_file() and json.loads(outcome.path.read_text())["metrics"] == record["metrics"]
    assert record["config"]["data"]["options"]["train_per_class"] == 24
    # the command line with the same options is the same run: its record exists, nothing runs
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--dataset", "shapes", "--profile", "smoke", "--device", "cpu",
                                   "--quiet", "--json", "--results", str(results), *sets])
    assert res.exit_code == 0, res.output
    [again] = json.loads(res.stdout)
    assert again["metrics"] == record["metrics"] and again["started_at"] == record["started_at"]  # skipped: the same record
    frame = dfbench.load_results(results)
    assert len(frame) == 1 and frame.loc[0, "mAP@all"] == record["metrics"]["mAP@all"]
    assert frame.loc[0, "config.data.options.train_per_class"] == 24


def test_run_suite_dry_run_lists_the_grid(tmp_path):
    result = dfbench.run_suite("smoke", dry_run=True, results=tmp_path / "results")
    assert result.runs and {r.status for r in result.runs} == {"todo"}
    assert result.todo() == len(result.runs)
    methods = {r.item.method for r in result.runs}
    assert "dfsbir" in methods and "classifier-only" in methods
