"""``dfbench results``: listing, filtering, comparing records; per-query outputs beside each record."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from click.testing import CliRunner

from dfbench.app import queries
from dfbench.app.cli import cli
from dfbench.train.metrics import retrieval_metrics

TINY = ["--set", "data.options.train_per_class=16", "--set", "data.options.test_per_class=8"]


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """Records of classifier-only (smoke, tiny data) for seeds 0 and 1."""
    results = tmp_path_factory.mktemp("results")
    res = CliRunner().invoke(
        cli, ["run", "--method", "classifier-only", "--profile", "smoke", "--device", "cpu", "--quiet", "--json",
              "-s", "0", "-s", "1", "--results", str(results), *TINY],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    records = json.loads(res.stdout)
    paths = sorted(results.rglob("*-s?.json"))
    return results, records, paths


def test_per_query_ap_is_each_querys_average_precision():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    g = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    kept: dict = {}
    metrics = retrieval_metrics(q, torch.tensor([1, 0]), g, torch.tensor([1, 0, 1]), per_query=kept)
    # query 0 (class 1): ranking g0 (relevant), g1, g2 (relevant): AP = (1/1 + 2/3) / 2
    # query 1 (class 0): ranking g2, g1 (relevant), g0: AP = 1/2
    assert kept["AP"].tolist() == pytest.approx([(1 + 2 / 3) / 2, 0.5])
    assert metrics["mAP@all"] == pytest.approx(float(kept["AP"].mean()))


def test_per_query_outputs_are_saved_beside_each_record(two_seeds):
    _, records, paths = two_seeds
    for record, path in zip(records, paths):
        assert record["per_query"] == "queries.csv.gz"
        file = path.parent / path.stem / "queries.csv.gz"
        header = gzip.decompress(file.read_bytes()).decode().splitlines()[0]
        assert header == "query,label,AP,top"
        rows = queries.load(file)
        assert [r["query"] for r in rows] == list(range(record["data"]["counts"]["test/sketch"]))
        assert sum(r["AP"] for r in rows) / len(rows) == pytest.approx(record["metrics"]["mAP@all"], abs=1e-6)
        gallery = record["data"]["counts"]["test/photo"]
        assert all(len(r["top"]) == queries.TOP and len(set(r["top"])) == queries.TOP and max(r["top"]) < gallery for r in rows)


def test_results_lists_and_filters(two_seeds):
    results, _, paths = two_seeds
    res = CliRunner().invoke(cli, ["results", "--results", str(results), "--json"])
    assert res.exit_code == 0, res.output
    assert [r["seed"] for r in json.loads(res.stdout)] == [0, 1]
    res = CliRunner().invoke(cli, ["results", "--results", str(results), "--seed", "1", "--status", "completed", "--method", "classifier-only", "--json"])
    assert [(r["seed"], r["_path"]) for r in json.loads(res.stdout)] == [(1, str(paths[1]))]
    res = CliRunner().invoke(cli, ["results", "--results", str(results), "--dataset", "shapes"])
    assert res.exit_code == 0 and "2 records" in res.stdout and str(paths[0]) in res.stdout
    res = CliRunner().invoke(cli, ["results", "--results", str(results), "--status", "failed"])
    assert res.exit_code == 2 and "No run record matches" in res.output


def test_results_compare_side_by_side(two_seeds):
    results, records, paths = two_seeds
    res = CliRunner().invoke(cli, ["results", "--compare", "--json", *map(str, paths)])
    assert res.exit_code == 0, res.output
    rows = {r["field"]: r["values"] for r in json.loads(res.stdout)}
    assert rows["seed"] == ["0", "1"] and rows["method"] == ["classifier-only"] * 2
    assert rows["mAP@all"] == [f"{r['metrics']['mAP@all']:.4f}" for r in records]
    assert "teacher photo" in rows and "time total (s)" in rows
    assert not any(f.startswith("config ") for f in rows)  # same config: no differing key
    res = CliRunner().invoke(cli, ["results", "--results", str(results), "--compare"])
    assert res.exit_code == 0 and "2 records side by side" in res.stdout
    res = CliRunner().invoke(cli, ["results", "--compare", str(paths[0])])
    assert res.exit_code == 2 and "needs two or more records" in res.output


def test_results_queries(two_seeds, tmp_path):
    _, record, paths = two_seeds
    res = CliRunner().invoke(cli, ["results", "--queries", str(paths[0]), "--show", "2"])
    assert res.exit_code == 0, res.output
    assert f"mean AP {record[0]['metrics']['mAP@all']:.4f} (= mAP@all)" in res.stdout
    assert "AP per class" in res.stdout and "worst queries" in res.stdout and "best queries" in res.stdout
    rows = json.loads(CliRunner().invoke(cli, ["results", "--queries", str(paths[0]), "--json"]).stdout)
    assert len(rows) == record[0]["data"]["counts"]["test/sketch"]
    # a record without per-query outputs (older records): a one-paragraph error
    old = tmp_path / "old-s0.json"
    old.write_text(paths[0].read_text())
    res = CliRunner().invoke(cli, ["results", "--queries", str(old)])
    assert res.exit_code == 2 and "has no per-query outputs" in res.output and "Traceback" not in res.output
