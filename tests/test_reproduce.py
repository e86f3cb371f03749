"""``dfbench reproduce RECORD`` (issue 30, item 10): a record run again from its own config, metric
by metric, with what differs from the record's run named."""

from __future__ import annotations

import json

from click.testing import CliRunner
from conftest import REPO, error_paragraph

from dfbench.app.cli import cli

SMOKE = ["--profile", "smoke", "--device", "cpu", "--quiet", "--set", "data.options.train_per_class=24",
         "--set", "data.options.test_per_class=12"]


def _record(results):
    [path] = [p for p in results.rglob("*.json") if p.parent.parent.parent == results]
    return path


def test_a_committed_classifier_only_record_reproduces_bit_for_bit():
    """Bit for bit on a CPU with the record's kernels (its vector capability); on another the
    float reductions of evaluation may differ in the last digits: then within 1e-5, and the
    difference of CPU is named."""
    import torch

    path = sorted((REPO / "leaderboards" / "records" / "shapes" / "classifier-only").glob("*-s0.json"))[0]
    recorded_isa = (json.loads(path.read_text())["env"].get("cpu") or {}).get("capability")
    same_kernels = recorded_isa == torch.backends.cpu.get_cpu_capability()
    res = CliRunner().invoke(cli, ["reproduce", str(path), "-q", *([] if same_kernels else ["--tolerance", "1e-5"])])
    assert res.exit_code == 0, res.output
    first = res.output.splitlines()[0]
    assert "teachers: the record's own weights, bit for bit" in res.output
    if same_kernels:
        assert first.endswith(": bit-exact"), res.output
        assert res.output.count("identical") == 4
    else:
        assert "within tolerance" in first or first.endswith(": bit-exact"), res.output
        assert "cpu" in res.output.split("differs from the record's run:")[1], res.output


def test_a_fresh_dfsbir_record_reproduces_and_the_rerun_never_touches_it(tmp_path):
    results = tmp_path / "r"
    res = CliRunner().invoke(cli, ["run", "--method", "dfsbir", "--results", str(results), *SMOKE, "--set", "params.rounds=3"])
    assert res.exit_code == 0, res.output
    path = _record(results)
    before = path.read_bytes()
    keep = tmp_path / "again"
    res = CliRunner().invoke(cli, ["reproduce", str(path), "-q", "--results", str(keep), "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert ": bit-exact" in res.output.splitlines()[0]
    assert path.read_bytes() == before  # the record reproduced is left as it was
    rerun = json.loads(_record(keep).read_text())
    assert rerun["config_hash"] == json.loads(before)["config_hash"] and rerun["seed"] == 0


def test_a_record_whose_numbers_differ_exits_1_and_says_by_how_much(tmp_path):
    results = tmp_path / "r"
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--results", str(results), *SMOKE])
    assert res.exit_code == 0, res.output
    path = _record(results)
    rec = json.loads(path.read_text())
    rec["metrics"]["mAP@all"] = round(rec["metrics"]["mAP@all"] - 0.01, 6)  # as another machine might have got
    path.write_text(json.dumps(rec))
    res = CliRunner().invoke(cli, ["reproduce", str(path), "-q"])
    assert res.exit_code == 1, res.output
    assert ": different (largest difference 0.01" in res.output.splitlines()[0]
    res = CliRunner().invoke(cli, ["reproduce", str(path), "-q", "--tolerance", "0.02"])
    assert res.exit_code == 0 and ": within tolerance" in res.output.splitlines()[0], res.output


def test_what_cannot_be_reproduced_is_a_one_paragraph_error(tmp_path):
    res = CliRunner().invoke(cli, ["reproduce", str(tmp_path / "absent.json")])
    assert res.exit_code == 2 and "No record at" in error_paragraph(res.output)
    (tmp_path / "x-s0.json").write_text('{"schema": "dfbench.run/1", "status": "completed"}')
    res = CliRunner().invoke(cli, ["reproduce", str(tmp_path / "x-s0.json")])
    assert res.exit_code == 2 and "cannot be reproduced: it has no valid 'dataset'" in error_paragraph(res.output)
