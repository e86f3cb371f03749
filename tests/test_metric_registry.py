"""Metrics are registered components (issue 29): every registered metric's per-query definition
agrees with the exact engine, a plugin's metric reaches the records of new runs, old records stay
valid without it, and leaderboards show its column only where records hold it."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from conftest import REPO, sealed
from dfbench.api.metrics import RetrievalMetric
from dfbench.api.plugins import get_plugins, registry
from dfbench.train.metrics import reference_metrics, retrieval_metrics

SMOKE = ["--profile", "smoke", "--device", "cpu", "--quiet", "--set", "data.options.train_per_class=24",
         "--set", "data.options.test_per_class=12"]


class RecallAt1(RetrievalMetric):
    """A third party's metric: is the query's first result relevant."""

    def per_query(self, ranked):
        return (ranked.ranks[:, 0] == 1).double()


class MeanReciprocalRank(RetrievalMetric):
    def per_query(self, ranked):
        return 1.0 / ranked.ranks[:, 0].double()


class ThirdParty:
    from dfbench import hookimpl

    @hookimpl
    def dfbench_register_metrics(self, register):
        register("R@1", RecallAt1, description="share of queries whose first result is relevant")
        register("MRR", MeanReciprocalRank, description="mean reciprocal rank of the first relevant result")


def _data(seed: int, nq=70, n=130, d=6, classes=7, ties=True):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(nq, d, generator=g)
    x = torch.randn(n, d, generator=g)
    if ties:  # exact duplicates: ties between relevant and irrelevant items, decided pessimistically
        x[1::4] = x[0::4][: x[1::4].shape[0]]
    ql = torch.randint(0, classes + 1, (nq,), generator=g)  # class `classes` is absent from the gallery
    gl = torch.randint(0, classes, (n,), generator=g)
    return q, ql, x, gl


@pytest.mark.parametrize("name", registry("metrics").names())
@pytest.mark.parametrize("seed", [0, 1])
def test_every_registered_metric_s_definition_agrees_with_the_exact_engine(name, seed):
    """The engine's fast path (the core four) and the per-query path (a metric's own definition on
    the engine's ranks) give the same value, and the brute-force reference agrees."""
    metric = registry("metrics").load(name)()
    q, ql, x, gl = _data(seed)
    fast = retrieval_metrics(q, ql, x, gl, chunk_size=16)
    through_definition = retrieval_metrics(q, ql, x, gl, chunk_size=16, extra={"definition": metric})["definition"]
    if metric.computed_by_engine:
        assert through_definition == pytest.approx(fast[name], abs=1e-12)
        assert fast[name] == pytest.approx(reference_metrics(q, ql, x, gl)[name], abs=1e-9)
    assert metric.in_bounds(through_definition)


def test_a_plugin_metric_computes_what_its_definition_says():
    q, ql, x, gl = _data(3, ties=True)
    out = retrieval_metrics(q, ql, x, gl, ks=(1,), extra={"R@1": RecallAt1(), "MRR": MeanReciprocalRank()})
    assert out["R@1"] == pytest.approx(out["P@1"], abs=1e-12)  # with one result, recall of the first = precision at 1
    # MRR by brute force: the pessimistic rank of each query's best relevant item
    sims = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(x, dim=1).T
    rr = []
    for i in range(len(q)):
        rel = gl == ql[i]
        if not rel.any():
            rr.append(0.0)
            continue
        best = sims[i][rel].max()
        rr.append(1.0 / (1 + int((sims[i][~rel] >= best).sum())))
    assert out["MRR"] == pytest.approx(sum(rr) / len(rr), abs=1e-9)


def test_a_metric_returning_the_wrong_shape_is_named():
    class Bad(RetrievalMetric):
        def per_query(self, ranked):
            return torch.zeros(3)

    q, ql, x, gl = _data(0)
    with pytest.raises(ValueError, match="The metric 'bad' returned per-query scores of shape"):
        retrieval_metrics(q, ql, x, gl, chunk_size=16, extra={"bad": Bad()})


def test_a_plugin_metric_reaches_new_records_and_old_records_and_leaderboards_stay(tmp_path):
    from dfbench.app.cli import cli
    from dfbench.app.leaderboard import build_leaderboards
    from dfbench.app.records import record_problem

    system = get_plugins()
    with system.registered(ThirdParty(), name="metrics-test"):
        assert {"R@1", "MRR"} <= set(registry("metrics").names())
        results = tmp_path / "r"
        res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--results", str(results), *SMOKE])
        assert res.exit_code == 0, res.output
        [path] = [p for p in results.rglob("*.json") if p.parent.parent.parent == results]
        rec = json.loads(path.read_text())
        assert set(rec["metrics"]) == {"mAP@all", "mAP@200", "P@100", "P@200", "R@1", "MRR"}
        assert 0.0 <= rec["metrics"]["R@1"] <= 1.0 and rec["metrics"]["MRR"] >= rec["metrics"]["R@1"]
        # the committed records (made before these metrics existed) still check, page for page
        built = build_leaderboards(check=True)
        assert built.stale == [], built.stale
        # a leaderboard of the new record shows the plugin's metrics beside the core four
        out = tmp_path / "lb"
        build_leaderboards(results, out=out, suites_dir=tmp_path / "no-suites")
        page = (out / "shapes.md").read_text()
        header = next(line for line in page.splitlines() if line.startswith("| rank"))
        assert "| R@1 " in header and "| MRR " in header
        row = next(line for line in page.splitlines() if "classifier-only" in line and line.startswith("|"))
        assert f"{rec['metrics']['R@1']:.4f}" in row
        # a value outside the bounds its registration declares makes the record unreadable, named
        bad = sealed({**rec, "metrics": {**rec["metrics"], "R@1": 1.5}})
        assert "R@1" in (record_problem(bad) or "") and "bounds" in record_problem(bad)
    # without the plugin, the record is still read: a metric no one here registered is a finite number
    assert record_problem(rec) is None
    assert "R@1" in (record_problem(sealed({**rec, "metrics": {**rec["metrics"], "R@1": float("nan")}})) or "")
    page_without = build_leaderboards(results, out=tmp_path / "lb2", suites_dir=tmp_path / "no-suites").files["shapes.md"]
    assert "| R@1 " in page_without  # leaderboards show what the records hold


def test_list_shows_the_metrics():
    from dfbench.app.cli import cli

    res = CliRunner().invoke(cli, ["list", "--kind", "metrics"])
    assert res.exit_code == 0 and all(k in res.output for k in ("mAP@all", "mAP@200", "P@100", "P@200"))


def test_docs_show_how_to_add_a_metric():
    text = (REPO / "docs" / "plugins.md").read_text()
    assert "dfbench_register_metrics(register)" in text and "class RecallAt1(RetrievalMetric)" in text
