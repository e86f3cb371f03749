"""The protocol (docs/protocol.md): a validation split held out of train before teachers train;
every choice is made on it; the test split is read once, after the choices."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dfbench.app import runner
from dfbench.app.cli import cli
from dfbench.api.datasets import ImageSet
from dfbench.api.plugins import get_plugins

TINY = ["--set", "data.options.train_per_class=24", "--set", "data.options.test_per_class=12"]


class SpyImageSet(ImageSet):
    """An image set that notes, for every read, whether the run's final evaluation had begun."""

    def __init__(self, base, log: list, state: dict):
        self.base, self.log, self.state = base, log, state
        self.labels = base.labels
        self.files = getattr(base, "files", None)

    def __len__(self):
        return len(self.base)

    def load_uint8(self, indices):
        self.log.append(self.state["evaluating"])
        return self.base.load_uint8(indices)


def _run_spying_on_test(monkeypatch, tmp_path, *extra):
    log, state = [], {"evaluating": False}
    load, evaluate = runner.load_benchmark, runner._Run.evaluate

    def spied_load(cfg, cache_dir):
        bench = load(cfg, cache_dir)
        for m in ("photo", "sketch"):
            bench.sets[("test", m)] = SpyImageSet(bench.sets[("test", m)], log, state)
        return bench

    def spied_evaluate(self, embedder):
        state["evaluating"] = True
        return evaluate(self, embedder)

    monkeypatch.setattr(runner, "load_benchmark", spied_load)
    monkeypatch.setattr(runner._Run, "evaluate", spied_evaluate)
    get_plugins()
    res = CliRunner().invoke(cli, ["run", "--method", "dfsbir", "--profile", "smoke", "--device", "cpu", "--quiet", "--json",
                                   "--results", str(tmp_path), "--set", "curve_eval_every=4", *TINY, *extra], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)[0], log


def test_under_the_protocol_the_test_split_is_read_only_by_the_final_evaluation(monkeypatch, tmp_path):
    """Teachers (accuracies), curves and synthesis read the validation split; the test split is
    first read when the final evaluation starts."""
    record, log = _run_spying_on_test(monkeypatch, tmp_path, "--set", "data.validation=0.25")
    assert log and all(log), f"{log.count(False)} test reads before the final evaluation"
    counts = record["data"]["counts"]
    assert counts["val/photo"] > 0 and counts["val/photo"] + counts["train/photo"] == 24 * len(record["data"]["classes"])
    curves = (tmp_path / record["artifacts"] / "curves.csv").read_text()
    assert "val mAP@all" in curves and "test mAP@all" not in curves


def test_without_the_protocol_the_curves_read_test(monkeypatch, tmp_path):
    """A config without a validation split (data.validation: null, as every config made before the
    protocol) monitors test mAP in its curves (no model is selected by it): the spy sees it, which
    is what the protocol, the default, removes."""
    record, log = _run_spying_on_test(monkeypatch, tmp_path, "--set", "data.validation=null")
    assert not all(log)
    assert "val/photo" not in record["data"]["counts"]


def test_the_validation_split_is_carved_per_class_and_fixed_by_the_data_seed():
    import torch

    from dfbench.train import subset
    from dfbench.api.datasets import Benchmark, TensorImageSet

    def bench():
        labels = torch.arange(4).repeat_interleave(10)
        sets = {(s, m): TensorImageSet(torch.zeros(40, 3, 2, 2, dtype=torch.uint8), labels) for s in ("train", "test") for m in ("photo", "sketch")}
        return Benchmark("toy", list("abcd"), 2, sets)

    a = subset.hold_out_validation(bench(), 0.2, seed=0)
    b = subset.hold_out_validation(bench(), 0.2, seed=0)
    c = subset.hold_out_validation(bench(), 0.2, seed=1)
    assert a.counts()["val/photo"] == 8 and a.counts()["train/photo"] == 32  # 2 of each class's 10
    assert torch.bincount(a.get("val", "sketch").labels).tolist() == [2, 2, 2, 2]
    assert a.get("val", "photo").indices == b.get("val", "photo").indices != c.get("val", "photo").indices
    assert not set(a.get("val", "photo").indices) & set(a.get("train", "photo").indices)
    assert a.selection_split == "val" and bench().selection_split == "test"
    with pytest.raises(Exception, match="data.validation"):
        runner.resolve_request(runner.RunRequest(method="dfsbir", profile="smoke", overrides=["data.validation=0.9"]))


def test_the_round_is_chosen_on_validation_and_recorded(monkeypatch, tmp_path):
    """params.select=best-val evaluates the students of the best validation evaluation; the test
    split is still read only by the final evaluation, and the record says what was chosen."""
    record, log = _run_spying_on_test(monkeypatch, tmp_path, "--set", "data.validation=0.25", "--set", "params.select=best-val")
    assert log and all(log)
    sel = record["selection"]
    curves = (tmp_path / record["artifacts"] / "curves.csv").read_text().splitlines()
    header = curves[0].split(",")
    col = header.index("val mAP@all")
    evaluated = {int(row.split(",")[0]): float(row.split(",")[col]) for row in curves[1:] if row.split(",")[col]}
    assert set(evaluated) == {0, 4, 8, 12}
    best = max(evaluated, key=lambda r: (evaluated[r], -r))  # the first of equal values
    assert (sel["round"], sel["split"], sel["rounds"]) == (best, "val", 12)
    assert sel["value"] == pytest.approx(evaluated[best])


@pytest.mark.parametrize("extra, message", [
    (["params.select=best-val", "data.validation=null"], "set data.validation"),
    (["params.select=best-val", "data.validation=0.2", "curve_eval_every=0"], "set curve_eval_every"),
])
def test_selection_without_a_validation_split_fails_before_any_work(extra, message):
    from dfbench.api.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        runner.resolve_request(runner.RunRequest(method="dfsbir", profile="smoke", overrides=extra))


def test_a_budget_of_teacher_image_passes_ends_the_run_and_is_recorded(monkeypatch, tmp_path):
    """params.budget: the run stops after the round in which the teachers have seen the budget's
    images (counted, monitoring excluded); the record states what was spent and the validation
    mAP@all along the way, which the leaderboard reads at fractions of the budget."""
    from dfbench.app.leaderboard import BUDGET_FRACTIONS, anytime

    record, _ = _run_spying_on_test(monkeypatch, tmp_path, "--set", "data.validation=0.2", "--set", "params.rounds=100",
                                    "--set", "params.budget=1000", "--set", "params.log_every=2")
    spent, rounds = record["budget"]["teacher_images"], record["budget"]["rounds"]
    per_round = spent / rounds  # the smoke dfsbir: a fixed number of teacher images per round
    assert record["budget"]["budget"] == 1000 and spent >= 1000 and spent - per_round < 1000 and rounds < 100
    assert [a["metric"] for a in record["anytime"]] == ["val mAP@all"] * len(record["anytime"])
    assert record["anytime"][0]["teacher images"] == 0 and record["anytime"][-1]["round"] == rounds  # the last round is evaluated
    values = anytime(record)
    assert len(values) == len(BUDGET_FRACTIONS) and all(isinstance(v, float) for v in values)
    assert values[-1] == [a["value"] for a in record["anytime"] if a["teacher images"] <= 1000][-1]


def test_a_synthesis_warm_up_spends_budget_before_the_first_encoder_step(monkeypatch, tmp_path):
    """params.warmup_rounds: synthesis alone first (teacher passes counted), so the first curve
    evaluation of the untrained students already sits after the warm-up's passes."""
    plain, _ = _run_spying_on_test(monkeypatch, tmp_path / "plain", "--set", "data.validation=0.2", "--set", "params.rounds=4")
    warm, _ = _run_spying_on_test(monkeypatch, tmp_path / "warm", "--set", "data.validation=0.2", "--set", "params.rounds=4",
                                  "--set", "params.warmup_rounds=3")
    per_round = plain["budget"]["teacher_images"] / 4
    assert plain["anytime"][0]["teacher images"] == 0
    assert warm["anytime"][0]["teacher images"] > 0
    # the warm-up's rounds leave out the students' (adversarial) term: fewer teacher passes than full rounds would spend
    assert warm["budget"]["teacher_images"] <= plain["budget"]["teacher_images"] + 3 * per_round
    assert warm["budget"]["rounds"] == 4 and warm["metrics"] != plain["metrics"]
