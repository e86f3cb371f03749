"""What a newcomer meets first: the first command and its summary, suites and leaderboards from any
folder, leaderboards that do not rank noise."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from click.testing import CliRunner
from conftest import sealed, REPO

from dfbench.app import leaderboard as lb
from dfbench.app import summary
from dfbench.app.cli import cli
from dfbench.app.records import SCHEMA

TINY = ["--set", "data.options.train_per_class=16", "--set", "data.options.test_per_class=8"]


def _record(method="m", seed=0, value=0.5, profile="cpu", chash="abc", dataset="shapes", classes=10, status="completed"):
    return sealed({
        "schema": SCHEMA, "dataset": dataset, "method": method, "config_hash": chash, "seed": seed, "status": status,
        "profile": profile, "timing": {"data": 0.1, "teachers": 20.0, "train": 0.0, "eval": 0.5, "total": 20.6},
        "data": {"classes": [f"c{i}" for i in range(classes)]},
        "teachers": {"photo": {"accuracy": {"photo": 0.6, "all": 0.6}}, "sketch": {"accuracy": {"sketch": 0.99, "all": 0.99}}},
        "metrics": {"mAP@all": value, "mAP@200": value, "P@100": value, "P@200": value},
        "pictures": ["retrieval.png"],
    })


def _write(folder, record):
    path = folder / record["dataset"] / record["method"] / f"{record['config_hash']}-s{record['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


# -- the first command ------------------------------------------------------------------------------


def test_readme_and_help_give_the_same_first_command():
    readme = (REPO / "README.md").read_text()
    first = re.search(r"^(dfbench run [^\n#]*?)\s*(#.*)?$", readme, re.M).group(1)
    res = CliRunner().invoke(cli, ["--help"])
    assert first in res.output, (first, res.output)


def test_summary_says_what_the_number_means(tmp_path):
    committed = tmp_path / "committed"
    for seed, value in ((0, 0.58), (1, 0.60), (2, 0.62)):
        _write(committed, _record(seed=seed, value=value))
    _write(committed, _record(seed=3, value=0.9, chash="other"))  # another config: never the reference
    mine = _record(value=0.61)
    text = "\n".join(summary.lines(mine, tmp_path / "results" / "shapes" / "m" / "abc-s0.json", records_dir=committed))
    assert "teachers (test accuracy): photo 0.600, sketch 0.990; chance 0.100" in text
    assert "time: data 0.1s · teachers 20.0s · training 0.0s · evaluation 0.5s · total 20.6s" in text
    assert "mAP@all 0.6100 is 6.1x chance (0.1000)" in text
    assert "in line with the committed leaderboard's 0.6000 ± 0.0200 (n=3) for this exact config" in text
    assert f"pictures: {tmp_path / 'results' / 'shapes' / 'm' / 'abc-s0' / 'retrieval.png'}" in text
    far = "\n".join(summary.lines(_record(value=0.3), tmp_path / "r.json", records_dir=committed))
    assert "away from the committed leaderboard's 0.6000" in far


def test_summary_without_a_reference_and_near_chance(tmp_path):
    rec = _record(value=0.11, chash="new")
    rec["teachers"]["photo"]["accuracy"]["all"] = 0.12
    text = "\n".join(summary.lines(rec, tmp_path / "r.json", records_dir=tmp_path))
    assert "is near chance (0.1000)" in text
    assert "a teacher is near chance" in text
    assert "no committed record in" in text and f"config {rec['config_hash']}: nothing to compare with" in text


def test_first_run_prints_the_summary(tmp_path):
    res = CliRunner().invoke(
        cli, ["run", "--method", "classifier-only", "--profile", "smoke", "--quiet", "--results", str(tmp_path), *TINY],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    out = res.stdout
    for text in ("teachers (validation accuracy): photo ", "chance 0.083", "time: data ", " · teachers ", " · evaluation ",
                 "mAP@all 0.", "record: ", "pictures: ", "next:", "dfbench run --method dfsbir"):
        assert text in out, text
    # the committed records are found wherever the command runs; this tiny config has none
    assert "no committed record in" in out and str(REPO / "leaderboards" / "records") in out


# -- suites and leaderboards from any folder ---------------------------------------------------------


def test_suites_are_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["bench", "smoke", "--dry-run", "--results", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    from dfbench.api.plugins import registry

    assert sum(line.startswith("todo\t") for line in lines) == len(registry("methods"))  # methods: all
    assert lines[-1].startswith("dry run of suite smoke: nothing ran;") and "done in" not in res.output
    # a user's own suite file
    (tmp_path / "mine.yaml").write_text("profile: smoke\nseeds: [0, 1]\nmethods: [classifier-only]\n")
    res = CliRunner().invoke(cli, ["bench", "--suite", str(tmp_path / "mine.yaml"), "--dry-run"])
    assert res.exit_code == 0 and res.stdout.count("todo\t") == 2
    res = CliRunner().invoke(cli, ["bench"])
    assert res.exit_code == 2 and "Give one suite" in res.output


def test_leaderboard_check_works_with_its_defaults_from_any_folder(tmp_path, monkeypatch):
    if not (REPO / "leaderboards" / "records").is_dir():
        pytest.skip("no committed records")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["leaderboard", "--check"])
    assert res.exit_code == 0, res.output
    assert str(REPO / "leaderboards" / "records") in res.output
    assert not list(tmp_path.iterdir())  # wrote nothing


def test_smoke_and_single_seed_rows_are_not_ranked(tmp_path):
    records = [
        *(_record("good", s, 0.7 + s / 100) for s in (0, 1)),
        *(_record("better", s, 0.8 + s / 100) for s in (0, 1)),
        _record("lucky", 0, 0.95),  # one seed
        _record("noise", 0, 0.99, profile="smoke", chash="smk"),
    ]
    for r in records:
        _write(tmp_path / "r", r)
    files = lb.render(lb.load_records(tmp_path / "r"))
    rows = {line.split("|")[2].strip(): line for line in files["shapes.md"].splitlines() if line.startswith("| ") and "---" not in line}
    assert rows["better"].startswith("| 1 ") and rows["good"].startswith("| 2 ")
    assert rows["lucky"].startswith("| - ") and "0.9500 (n=1)" in rows["lucky"] and "±" not in rows["lucky"]
    assert rows["noise"].startswith("| - ") and "(n=1)" in rows["noise"]
    assert lb.UNRANKED_NOTE in files["shapes.md"]
    assert "| lucky " in files["README.md"] and "0.9500 (n=1)" in files["README.md"] and "0.9900 (smoke)" in files["README.md"]

    res = CliRunner().invoke(cli, ["leaderboard", "--results", str(tmp_path / "r"), "--format", "csv", "--suites", str(tmp_path)])
    assert res.exit_code == 0, res.output
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [(r["method"], r["rank"], r["unranked"]) for r in table] == [
        ("better", "1", ""), ("good", "2", ""), ("lucky", "", "n=1"), ("noise", "", "smoke")]
    assert table[2]["mAP@all_std"] == "" and float(table[0]["mAP@all_mean"]) == pytest.approx(0.805)
    res = CliRunner().invoke(cli, ["leaderboard", "--results", str(tmp_path / "r"), "--format", "json", "--suites", str(tmp_path)])
    rows = json.loads(res.stdout)
    assert rows[0]["method"] == "better" and rows[0]["n"] == 2 and rows[3]["unranked"] == "smoke"
    assert not (tmp_path / "leaderboards").exists()  # csv and json write no file


@pytest.mark.parametrize("data, cache, label", [
    ("DATA", "CACHE", "$DFBENCH_DATA/quickdraw"),
    (None, "CACHE", "$DFBENCH_CACHE/data/quickdraw, as DFBENCH_DATA is not set"),
])
def test_missing_data_error_names_the_variable_the_root_came_from(data, cache, label, tmp_path, monkeypatch):
    for var, value in (("DFBENCH_DATA", data), ("DFBENCH_CACHE", cache)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, str(tmp_path / value))
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--dataset", "quickdraw", "--profile", "smoke"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    root = tmp_path / (data or f"{cache}/data") / "quickdraw"
    assert f"{root} (the default: {label}) does not exist" in " ".join(res.output.split())


def test_one_config_on_two_data_roots_is_two_leaderboard_rows(tmp_path):
    """Records of one config made on two data roots (their run ids carry the data digest) are two
    rows, each naming its data; records of the default data stay one row."""
    a = {**_record("m", 0, 0.5), "run_id": "abc123abc123-d1111aaaa-s0"}
    b = {**_record("m", 0, 0.9), "run_id": "abc123abc123-d2222bbbb-s0"}
    for i, r in enumerate((a, b)):
        _write(tmp_path / f"r{i}", r)
    records = lb.load_records(tmp_path / "r0") + lb.load_records(tmp_path / "r1")
    text = lb.render(records)["shapes.md"]
    assert "(data `d1111aaaa`)" in text and "(data `d2222bbbb`)" in text
    assert "0.5000 (n=1)" in text and "0.9000 (n=1)" in text


def test_summary_says_whether_the_committed_seed_is_reproduced(tmp_path):
    """The committed record of the run's own seed: reproduced bit for bit, or not, with the thread
    counts when they differ (CPU runs reproduce at the same count only)."""
    from dfbench.app import summary

    committed = {**_record("m", 0, 0.6097), "env": {"torch_threads": 1}}
    _write(tmp_path / "records", committed)
    ref = summary.reference(committed, tmp_path / "records")
    same = {**committed, "env": {"torch_threads": 1}}
    assert summary.same_seed(same, ref) == "  reproduces the committed seed-0 record bit for bit"
    other = {**_record("m", 0, 0.6259), "env": {"torch_threads": 2}}
    line = summary.same_seed(other, ref)
    assert "differs from the committed seed-0 record (0.6097)" in line and "ran on 1 torch thread(s), this run on 2" in line
    assert "report it" in summary.same_seed({**other, "env": {"torch_threads": 1}}, ref)
    assert summary.same_seed({**other, "seed": 5}, ref) is None
