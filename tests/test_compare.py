"""Paired comparison of two leaderboard rows (dfbench.compare): per-seed differences and a
per-query sign-flip permutation test, computed from records and their per-query files only."""

import gzip
from pathlib import Path

import pytest
from conftest import sealed

from dfbench.compare import compare
from dfbench.errors import ConfigError


def _record(tmp_path, label, seed, aps):
    art = f"{label}-s{seed}"
    (tmp_path / art).mkdir()
    lines = ["query,label,AP,top"] + [f"{i},{i % 3},{ap:.6f},0 1" for i, ap in enumerate(aps)]
    (tmp_path / art / "queries.csv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return {"dataset": "d", "method": label.split()[0], "seed": seed, "status": "completed", "artifacts": art,
            "suite": {"label": label}, "metrics": {"mAP@all": sum(aps) / len(aps)}}


def test_a_row_clearly_above_another_is_found_so_and_a_tie_is_not(tmp_path):
    import random

    rnd = random.Random(0)
    records = []
    for s in range(3):
        base = [rnd.random() for _ in range(200)]
        records += [_record(tmp_path, "b (probs)", s, base),
                    _record(tmp_path, "a (proxy)", s, [min(1.0, x + 0.05 + 0.02 * rnd.random()) for x in base]),
                    _record(tmp_path, "c (probs)", s, list(base))]
    better = compare(records, tmp_path, "d", "a (proxy)", "b (probs)", draws=2000)
    assert better.seeds == [0, 1, 2] and better.seeds_favouring_a == 3 and better.mean_delta > 0.04
    assert better.p_queries < 0.001 and better.p_seeds == pytest.approx(0.25)  # 3 seeds: 2/8 at best
    assert better.queries == 600
    tie = compare(records, tmp_path, "d", "c (probs)", "b (probs)", draws=2000)
    assert tie.mean_delta == 0 and tie.p_queries == 1.0 and tie.seeds_favouring_a == 0


def test_rows_without_common_seeds_are_refused(tmp_path):
    records = [_record(tmp_path, "a", 0, [0.5, 0.6]), _record(tmp_path, "b", 1, [0.5, 0.6])]
    with pytest.raises(ConfigError, match="No seed on d has completed records of both 'a' and 'b'"):
        compare(records, tmp_path, "d", "a", "b")


def test_the_compare_command_prints_the_paired_comparison(tmp_path):
    from click.testing import CliRunner

    from dfbench.app.cli import cli
    import json

    for s in range(2):
        for label, aps in (("a (proxy)", [0.9, 0.8, 0.7]), ("b (probs)", [0.5, 0.4, 0.3])):
            r = _record(tmp_path, label, s, aps)
            r["metrics"] = {"mAP@all": r["metrics"]["mAP@all"], "mAP@200": 0.0, "P@100": 0.0, "P@200": 0.0}
            r.update({"schema": "dfbench.run/1", "run_id": f"abc-s{s}", "config_hash": "abc", "profile": "cpu", "error": None,
                      "config": {"row": label}, "teachers": {}, "timing": {}, "env": {}})
            sealed(r)  # its config hash is its config's, as dfbench checks on read
            folder = tmp_path / "d" / r["method"]
            folder.mkdir(parents=True, exist_ok=True)
            r["artifacts"] = str(Path("d") / r["method"] / f"{label[0]}-s{s}")
            (tmp_path / r["artifacts"]).mkdir(parents=True, exist_ok=True)
            (tmp_path / r["artifacts"] / "queries.csv.gz").write_bytes((tmp_path / f"{label}-s{s}" / "queries.csv.gz").read_bytes())
            (folder / f"{label[0]}-s{s}.json").write_text(json.dumps(r))
    res = CliRunner().invoke(cli, ["compare", "a (proxy)", "b (probs)", "--dataset", "d", "--results", str(tmp_path), "--draws", "500"])
    assert res.exit_code == 0, res.output
    assert "+0.4000" in res.output and "2/2" in res.output
    bad = CliRunner().invoke(cli, ["compare", "a (proxy)", "nope", "--dataset", "d", "--results", str(tmp_path)])
    assert bad.exit_code == 2 and "No seed on d has completed records of both" in bad.output


def _teachers(record, photo, sketch):
    record["teachers"] = {"photo": {"accuracy": {"photo": 0.7}, "cache": "/c/teachers/d-cnn-photo-s0-k.pt", "weights_sha256": photo},
                          "sketch": {"accuracy": {"sketch": 0.8}, "cache": "/c/teachers/d-cnn-sketch-s0-k.pt", "weights_sha256": sketch}}
    return record


def test_a_seed_run_on_other_teachers_is_left_out_of_the_pairing_and_named(tmp_path):
    records = []
    for s in range(3):
        records += [_teachers(_record(tmp_path, "a (proxy)", s, [0.9, 0.8, 0.7]), f"p{s}", f"k{s}"),
                    # seed 1's photo teacher of row b was trained again elsewhere: another teacher
                    _teachers(_record(tmp_path, "b (probs)", s, [0.5, 0.4, 0.3]), f"p{s}" + ("x" if s == 1 else ""), f"k{s}")]
    c = compare(records, tmp_path, "d", "a (proxy)", "b (probs)", draws=200)
    assert c.seeds == [0, 2] and c.other_teachers == (1,) and c.queries == 6
    assert c.row()["seeds"] == "2 (seed 1 left out: other teachers)"


def test_rows_on_other_teachers_on_every_seed_are_refused(tmp_path):
    records = [_teachers(_record(tmp_path, "a", 0, [0.5, 0.6]), "p", "k"), _teachers(_record(tmp_path, "b", 0, [0.5, 0.6]), "p", "other")]
    with pytest.raises(ConfigError, match="ran on different teachers on every seed"):
        compare(records, tmp_path, "d", "a", "b")


def test_records_without_digests_are_told_apart_by_cache_entry_and_accuracy():
    from dfbench.app.records import same_teachers

    def rec(acc, digest=None):
        t = {"accuracy": {"photo": acc}, "cache": "/x/teachers/q-cnn-photo-s1-ed61.pt"}
        return {"teachers": {"photo": {**t, **({"weights_sha256": digest} if digest else {})}}}

    assert same_teachers(rec(0.6733), rec(0.6733)) and same_teachers(rec(0.6733), rec(0.6733, "abc"))
    assert not same_teachers(rec(0.6733), rec(0.6867)) and not same_teachers(rec(0.6733, "abc"), rec(0.6733, "abd"))
