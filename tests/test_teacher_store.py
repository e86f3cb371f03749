"""Same teachers on every machine: records carry their teachers' weight digests, and a teacher
missing from the cache is read from the teacher store (benchmarks/pin_teachers.py) before it is
trained, so a suite's rows run on the pinned teachers wherever they run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from click.testing import CliRunner

from dfbench.app.cli import cli
from dfbench.api.plugins import get_plugins

ROOT = Path(__file__).resolve().parent.parent


def _pin(argv):
    spec = importlib.util.spec_from_file_location("pin_teachers", ROOT / "benchmarks" / "pin_teachers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def _run(results, cache, *extra):
    get_plugins()
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--profile", "smoke", "--device", "cpu", "--quiet", "--json",
                                   "--results", str(results), "--cache-dir", str(cache), *extra], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)[0]


def test_records_carry_digests_and_a_pinned_teacher_is_loaded_not_trained_again(tmp_path, monkeypatch):
    first = _run(tmp_path / "r1", tmp_path / "cache-a")
    trained = first["teachers"]
    assert set(trained) == {"photo", "sketch"}
    assert all(t["source"] == "trained" and len(t["weights_sha256"]) == 16 and t["trained_on"].startswith("cpu: ") for t in trained.values())

    store = tmp_path / "store"
    assert _pin(["--cache", str(tmp_path / "cache-a"), "--dataset", "shapes", "--store", str(store)]) == 0
    manifest = json.loads((store / "manifest.json").read_text())
    assert sorted(m["weights_sha256"] for m in manifest.values()) == sorted(t["weights_sha256"] for t in trained.values())

    # another machine: an empty cache; the pinned teachers are read, bit for bit, not trained
    monkeypatch.setenv("DFBENCH_TEACHERS", str(store))
    second = _run(tmp_path / "r2", tmp_path / "cache-b")
    for role, t in second["teachers"].items():
        assert t["source"] == "store" and t["cached"] and t["weights_sha256"] == trained[role]["weights_sha256"]
    assert second["metrics"] == first["metrics"]
    assert not (tmp_path / "cache-b" / "teachers").exists() or not any((tmp_path / "cache-b" / "teachers").iterdir())


def test_pinning_another_teacher_under_a_pinned_key_is_refused(tmp_path):
    import torch

    _run(tmp_path / "r1", tmp_path / "cache")
    store = tmp_path / "store"
    assert _pin(["--cache", str(tmp_path / "cache"), "--dataset", "shapes", "--store", str(store)]) == 0
    path = next((tmp_path / "cache" / "teachers").glob("shapes-*-photo-*.pt"))
    entry = torch.load(path, weights_only=False)
    name = next(iter(entry["state_dict"]))
    entry["state_dict"][name] = entry["state_dict"][name] + 1e-6  # trained again elsewhere: other last bits
    torch.save(entry, path)
    assert _pin(["--cache", str(tmp_path / "cache"), "--dataset", "shapes", "--store", str(store)]) == 2


def test_a_row_that_ran_on_other_teachers_is_marked_and_unranked():
    from dfbench.app.leaderboard import records_frame, summarise

    def rec(method, seed, digest, mAP):
        return {"dataset": "d", "method": method, "config_hash": method[:3], "seed": seed, "status": "completed", "profile": "cpu",
                "metrics": {"mAP@all": mAP, "mAP@200": mAP, "P@100": mAP, "P@200": mAP}, "config": {"teachers": {"epochs": 12}},
                "suite": {"label": method, "seeds": [0, 1]},
                "teachers": {"photo": {"accuracy": 0.7, "cache": "/c/p.pt", "weights_sha256": digest},
                             "sketch": {"accuracy": 0.8, "cache": "/c/s.pt", "weights_sha256": f"k{seed}"}}}

    records = [rec("aaa", s, f"p{s}", 0.5) for s in (0, 1)] + [rec("bbb", s, f"p{s}", 0.4) for s in (0, 1)]
    records += [rec("ccc", 0, "p0", 0.3), rec("ccc", 1, "elsewhere", 0.6)]  # seed 1's photo teacher is another
    summary = summarise(records_frame(records)).set_index("method")
    assert summary.loc["ccc", "other_teachers"] == [1]
    assert summary.loc["aaa", "other_teachers"] == [] and summary.loc["bbb", "other_teachers"] == []
    from dfbench.app.leaderboard import dataset_table

    table = dataset_table(summary.reset_index(), "d")
    line = next(x for x in table.splitlines() if "| ccc" in x)
    assert line.startswith("| -") and "other teachers: seed 1" in line

    # the pinned teachers are the reference where a row ran on them, even against a majority
    pinned = frozenset({"elsewhere", "k0", "k1"})
    summary = summarise(records_frame(records), pinned).set_index("method")
    assert summary.loc["ccc", "other_teachers"] == []
    assert summary.loc["aaa", "other_teachers"] == [1] and summary.loc["bbb", "other_teachers"] == [1]
    # no row on pinned teachers for a seed: the majority decides, as before
    assert summarise(records_frame(records), frozenset({"nothing"})).set_index("method").loc["ccc", "other_teachers"] == [1]


def test_the_pinned_teachers_are_read_from_the_store_manifest(tmp_path):
    from dfbench.app.records import pinned_teachers

    assert pinned_teachers(tmp_path) == frozenset()  # no manifest: nothing pinned
    (tmp_path / "manifest.json").write_text(json.dumps({"d-cnn-photo-s0-x": {"weights_sha256": "abc"}, "d-cnn-sketch-s0-y": {"weights_sha256": "def"}}))
    assert pinned_teachers(tmp_path) == {"abc", "def"}
    committed = pinned_teachers()  # the checkout's own store
    assert "26f5166012cba896" in committed  # qd-cifar10's unified teacher of seed 1, pinned in leaderboards/teachers
