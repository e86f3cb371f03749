"""Synthesis measured while it runs (issue 14): pair agreement, class coverage, teacher confidence
and class-alignment KL at every curve row and in the record."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from conftest import sealed
from dfbench.app.cli import cli
from dfbench.train.engine import SYNTHESIS_STATS, synthesis_stats
from dfbench.api.inversion import SynthBatch


def _batch(photo_logits, sketch_logits):
    n = len(photo_logits)
    x = torch.zeros(n, 3, 4, 4)
    labels = torch.zeros(n, dtype=torch.long)
    return SynthBatch({"photo": x, "sketch": x}, {"photo": labels, "sketch": labels},
                      {"photo": torch.tensor(photo_logits), "sketch": torch.tensor(sketch_logits)})


def test_synthesis_stats_of_known_logits():
    ctx = SimpleNamespace(num_classes=4)
    big = 20.0
    # pairs 0 and 1 agree (classes 0 and 1), pair 2 does not (2 vs 3); every class appears once
    photo = [[big, 0, 0, 0], [0, big, 0, 0], [0, 0, big, 0]]
    sketch = [[big, 0, 0, 0], [0, big, 0, 0], [0, 0, 0, big]]
    stats = synthesis_stats(ctx, _batch(photo, sketch), "independent")
    assert list(stats) == list(SYNTHESIS_STATS)
    assert stats["pair agreement"] == pytest.approx(2 / 3)
    assert stats["class coverage"] == pytest.approx(1.0)
    assert stats["teacher confidence"] == pytest.approx(1.0, abs=1e-6)
    assert stats["class KL"] == pytest.approx(big / 3, rel=1e-3)  # only the disagreeing pair costs
    # each side alone: the photos (gallery) show classes 0-2, the sketches (queries) 0, 1 and 3
    assert stats["gallery class coverage"] == pytest.approx(0.75) and stats["query class coverage"] == pytest.approx(0.75)
    collapsed = synthesis_stats(ctx, _batch([[big, 0, 0, 0]] * 3, sketch), "independent")
    assert collapsed["gallery class coverage"] == pytest.approx(0.25) and collapsed["query class coverage"] == pytest.approx(0.75)
    same = synthesis_stats(ctx, _batch(photo, photo), "independent")
    assert same["pair agreement"] == 1.0 and same["class KL"] == pytest.approx(0.0, abs=1e-6)
    flat = synthesis_stats(ctx, _batch([[0.0] * 4] * 2, [[0.0] * 4] * 2), "independent")
    assert flat["teacher confidence"] == pytest.approx(0.25) and flat["class coverage"] == pytest.approx(0.25)


def test_a_synthesis_run_records_its_convergence(tmp_path):
    res = CliRunner().invoke(cli, [
        "run", "--method", "dfsbir", "--profile", "smoke", "--device", "cpu", "--quiet", "--json",
        "--results", str(tmp_path), "--set", "data.options.train_per_class=24", "--set", "data.options.test_per_class=12",
    ], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    [record] = json.loads(res.stdout)
    stats = record["synthesis"]
    assert list(stats) == list(SYNTHESIS_STATS)
    assert all(0.0 <= stats[k] <= 1.0 for k in ("pair agreement", "class coverage", "teacher confidence"))
    curves = (tmp_path / record["artifacts"] / "curves.csv").read_text().splitlines()
    header = curves[0].split(",")
    assert all(f"synth/{k}" in header for k in SYNTHESIS_STATS)
    last = dict(zip(header, curves[-1].split(",")))
    assert float(last["synth/pair agreement"]) == pytest.approx(stats["pair agreement"])  # the record's is the last row's
    # a method that synthesises nothing has no such record field
    res = CliRunner().invoke(cli, [
        "run", "--method", "classifier-only", "--profile", "smoke", "--device", "cpu", "--quiet", "--json",
        "--results", str(tmp_path), "--set", "data.options.train_per_class=24", "--set", "data.options.test_per_class=12",
    ], catch_exceptions=False)
    assert "synthesis" not in json.loads(res.stdout)[0]


def test_leaderboards_show_final_pair_agreement_when_measured(tmp_path):
    from dfbench.app import leaderboard as lb
    from test_first_hour import _record, _write

    plain = [_record("classifier-only", s, 0.6) for s in (0, 1)]
    synth = [{**_record("dfsbir", s, 0.3), "synthesis": {"pair agreement": 0.2 + s / 10}} for s in (0, 1)]
    for r in plain:
        _write(tmp_path / "a", r)
    assert "pair agreement" not in lb.render(lb.load_records(tmp_path / "a"))["shapes.md"]  # nothing measured it
    for r in plain + synth:
        _write(tmp_path / "b", r)
    text = lb.render(lb.load_records(tmp_path / "b"))["shapes.md"]
    rows = {line.split("|")[2].strip(): line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert "pair agreement" in rows["method"]
    cell = lambda row: row.rstrip(" |").rsplit("|", 1)[1].strip()  # noqa: E731 (the last column)
    assert cell(rows["dfsbir"]) == "0.25" and cell(rows["classifier-only"]) == "-"  # coverage unknown: no verdict


@pytest.mark.parametrize("pairs, coverage, marked", [
    ((0.95, 0.92), (1.0, 1.0), False),  # every seed converged
    ((0.95, 0.85), (1.0, 1.0), True),  # one seed's pairs below 0.9
    ((0.95, 0.97), (1.0, 0.9), True),  # one seed missed a class
])
def test_leaderboards_mark_a_synthesis_that_has_not_converged(tmp_path, pairs, coverage, marked):
    """Converged before judged (docs/protocol.md): a row is marked unless every seed's pairs agree
    at least 90% of the time and cover every class."""
    from dfbench.app import leaderboard as lb
    from test_first_hour import _record, _write

    for s, (p, c) in enumerate(zip(pairs, coverage)):
        _write(tmp_path, {**_record("dfsbir", s, 0.3), "synthesis": {"pair agreement": p, "class coverage": c}})
    text = lb.render(lb.load_records(tmp_path))["shapes.md"]
    row = next(line for line in text.splitlines() if line.startswith("| ") and "dfsbir" in line)
    cell = row.rstrip(" |").rsplit("|", 1)[1].strip()
    assert cell == f"{sum(pairs) / 2:.2f}" + (" (not converged)" if marked else "")


def test_leaderboards_show_the_round_validation_selected_and_mark_an_untrained_choice(tmp_path):
    """A row whose seeds all selected round 0 (the students before any training step) is a readout of
    the starting point, not of data-free training: the leaderboard says so, seed by seed."""
    from dfbench.app import leaderboard as lb
    from test_first_hour import _record, _write

    picks = {"dfsbir-plus": (0, 0), "dfsbir": (100, 300)}
    for method, rounds in picks.items():
        for s, r in enumerate(rounds):
            _write(tmp_path, {**_record(method, s, 0.3), "selection": {"select": "best-val", "split": "val", "round": r, "rounds": 400}})
    _write(tmp_path, _record("classifier-only", 0, 0.5))
    text = lb.render(lb.load_records(tmp_path))["shapes.md"]
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")] for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    col = rows["method"].index("selected round (val)")
    assert rows["dfsbir-plus"][col] == "0 · 0 of 400 (untrained)"
    assert rows["dfsbir"][col] == "100 · 300 of 400"
    assert rows["classifier-only"][col] == "-"  # trains nothing, selects nothing
    assert lb.selected_cell(([0, 100], 400)) == "0 · 100 of 400"  # one seed trained: not marked


def test_every_row_names_its_teachers_and_readout(tmp_path):
    """Rows compare like with like only when they share teachers and readout: each row says both
    (the teachers from the roles the run loaded, the readout from its config)."""
    from dfbench.app import leaderboard as lb
    from test_first_hour import _record, _write

    plain = sealed({**_record("classifier-only", 0, 0.6), "config": {"params": {"variant": "independent", "readout": "probs"}}})
    synth = sealed({**_record("dfsbir", 0, 0.3), "teachers": {"unified": {"accuracy": 0.7}, "modality": {"accuracy": 1.0}},
                    "config": {"params": {"variant": "unified", "readout": "proxy"}}})
    for r in (plain, synth):
        _write(tmp_path, r)
    files = lb.render(lb.load_records(tmp_path))
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")] for line in files["shapes.md"].splitlines() if line.startswith("| ") and "---" not in line}
    header = rows["method"]
    assert [rows["classifier-only"][header.index(k)] for k in ("teachers", "readout")] == ["independent", "probs"]
    assert [rows["dfsbir"][header.index(k)] for k in ("teachers", "readout")] == ["unified", "proxy"]
    # the overview groups rows like the dataset pages: the same teachers, readouts into the same space
    assert "## independent teachers, class-posterior readouts" in files["README.md"]
    assert "## unified teachers, class-posterior readouts" in files["README.md"]


@pytest.mark.parametrize("readout", ["features", "logits", "probs"])
def test_classifier_only_reads_out_features_logits_or_probabilities(readout, tmp_path):
    """The readout is an axis of its own: classifier-only has a row for each of the teachers'
    penultimate features, logits and probabilities."""
    res = CliRunner().invoke(cli, [
        "run", "--method", "classifier-only", "--profile", "smoke", "--device", "cpu", "--quiet", "--json",
        "--results", str(tmp_path), "--set", f"params.readout={readout}",
        "--set", "data.options.train_per_class=24", "--set", "data.options.test_per_class=12",
    ], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    [record] = json.loads(res.stdout)
    assert record["config"]["params"]["readout"] == readout and 0.0 <= record["metrics"]["mAP@all"] <= 1.0
