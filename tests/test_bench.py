"""Suites: the smoke suite end to end, shards, skipping, failures recorded, leaderboards from records."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dfbench.app import suites
from dfbench.app.cli import cli
from dfbench.api.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_shards_cover_the_grid_exactly_once():
    items = [suites.SuiteItem(m, "shapes", s, "smoke", m) for m in "abcde" for s in (0, 1, 2)]
    for n in (1, 2, 3, 4, 7):
        parts = [suites.shard_items(items, (i, n)) for i in range(1, n + 1)]
        flat = [x for p in parts for x in p]
        assert len(flat) == len(items) and {id(x) for x in flat} == {id(x) for x in items}
    with pytest.raises(ConfigError):
        suites.parse_shard("0/3")
    with pytest.raises(ConfigError):
        suites.parse_shard("two")


def test_bench_selects_rows_by_seed_and_method(tmp_path):
    suites_dir = tmp_path / "benchmarks"
    suites_dir.mkdir()
    (suites_dir / "grid.yaml").write_text(
        "profile: smoke\nseeds: [0, 1]\ndatasets: [shapes]\nruns:\n"
        "  - {method: classifier-only}\n"
        "  - {method: dfsbir, label: dfsbir short, set: {params.rounds: 2}}\n"
        "  - {method: dfsbir, label: dfsbir long, set: {params.rounds: 3}}\n"
    )
    runner = CliRunner()

    def rows(*args):
        res = runner.invoke(cli, ["bench", str(suites_dir / "grid.yaml"), "--dry-run", "--results", str(tmp_path / "r"), *args])
        assert res.exit_code == 0, res.output
        return sorted(line.split("\t")[1] for line in res.output.splitlines() if line.startswith("todo\t"))

    assert len(rows()) == 6
    assert rows("--method", "dfsbir", "--seed", "1") == ["dfsbir long / shapes / seed 1", "dfsbir short / shapes / seed 1"]
    assert rows("--method", "dfsbir long", "--method", "classifier-only") == [
        "classifier-only / shapes / seed 0", "classifier-only / shapes / seed 1",
        "dfsbir long / shapes / seed 0", "dfsbir long / shapes / seed 1"]
    res = runner.invoke(cli, ["bench", str(suites_dir / "grid.yaml"), "--dry-run", "--method", "dfq"])
    assert res.exit_code == 2 and "no row of method or label 'dfq'" in res.output and "Traceback" not in res.output


def test_suite_variants_and_unknown_keys(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "seeds: [0, 1]\ndatasets: [shapes]\nruns:\n  - {method: dfsbir, label: no-onehot, set: {params.weights.one_hot: 0}}\n"
    )
    s = suites.load_suite(tmp_path / "s.yaml", ["dfsbir"])
    assert [(i.label, i.seed) for i in s.items] == [("no-onehot", 0), ("no-onehot", 1)]
    assert s.items[0].overrides == ["params.weights.one_hot=0"]
    (tmp_path / "bad.yaml").write_text("seed: [0]\n")
    with pytest.raises(ConfigError, match="Did you mean 'seeds'"):
        suites.load_suite(tmp_path / "bad.yaml", ["dfsbir"])

@pytest.mark.slow

def test_smoke_suite_end_to_end_and_leaderboard(tmp_path):
    results, out = tmp_path / "results", tmp_path / "lb"
    runner = CliRunner()
    res = runner.invoke(cli, ["bench", str(REPO / "benchmarks" / "smoke.yaml"), "--quiet", "--results", str(results)])
    assert res.exit_code == 0, res.output
    methods = json.loads(runner.invoke(cli, ["list", "--kind", "methods", "--json"]).stdout)
    records = [json.loads(p.read_text()) for p in results.rglob("*.json") if p.name != "split.json"]
    assert {r["method"] for r in records} == {m["name"] for m in methods}
    assert all(r["status"] == "completed" and r["suite"]["name"] == "smoke" for r in records)
    # a second pass skips everything
    again = runner.invoke(cli, ["bench", str(REPO / "benchmarks" / "smoke.yaml"), "--quiet", "--results", str(results)])
    assert f"0 completed, {len(records)} skipped, 0 failed" in again.output
    # leaderboards from records; --check passes, then fails once a file is edited
    assert runner.invoke(cli, ["leaderboard", "--results", str(results), "--out", str(out)]).exit_code == 0
    table = (out / "shapes.md").read_text()
    assert all(f"| {r['method']} " in table for r in records)
    assert runner.invoke(cli, ["leaderboard", "--results", str(results), "--out", str(out), "--check"]).exit_code == 0
    (out / "shapes.md").write_text(table + "\nedited\n")
    assert runner.invoke(cli, ["leaderboard", "--results", str(results), "--out", str(out), "--check"]).exit_code == 1


def test_missing_seeds_show_incomplete_and_failures_are_recorded(tmp_path):
    (tmp_path / "s.yaml").write_text(
        # a shared set applies to every dataset of the grid: data.limit (a core option), not shapes' own sizes,
        # which the folder dataset does not have (a config error there, before any work)
        "profile: smoke\nseeds: [0, 1]\ndatasets: [shapes, folder]\nmethods: [dfsbir]\n"
        "set:\n  data.limit: 12\n  params.rounds: 4\n"
    )
    results = tmp_path / "r"
    res = CliRunner().invoke(cli, ["bench", str(tmp_path / "s.yaml"), "--quiet", "--results", str(results), "--shard", "1/2"])
    # shard 1/2 runs shapes seed 0 and folder seed 0; folder has no data root: recorded as failed
    assert res.exit_code == 1 and "1 completed, 0 skipped, 1 failed" in res.output
    failed = [json.loads(p.read_text()) for p in (results / "folder").rglob("*.json")]
    assert failed and failed[0]["status"] == "failed" and "'folder'" in failed[0]["error"]
    from dfbench.app import leaderboard as lb

    files = lb.render(lb.load_records(results))
    assert "incomplete (1/2 seeds: 0." in files["shapes.md"] and "| -  " in files["shapes.md"]  # unranked, marked partial
    assert "0/2 (1 failed)" in files["folder.md"]


def test_committed_leaderboards_match_their_records():
    """The committed leaderboards are exactly what the committed records produce."""
    records = REPO / "leaderboards" / "records"
    if not records.is_dir():
        pytest.skip("no committed records")
    res = CliRunner().invoke(cli, ["leaderboard", "--results", str(records), "--out", str(REPO / "leaderboards"), "--check"])
    assert res.exit_code == 0, res.output


def test_own_table_suites_and_reported_rows(tmp_path):
    """A suite with 'leaderboard: own' gets its own file, filled from the records its grid points to
    (also those another suite produced); its records stay out of the dataset table; papers' reported
    numbers show as separate rows of the overview and never in a dataset table."""
    suites_dir, results, out = tmp_path / "benchmarks", tmp_path / "results", tmp_path / "lb"
    (suites_dir / "reported").mkdir(parents=True)
    common = "profile: smoke\nseeds: [0]\ndatasets: [shapes]\n"
    (suites_dir / "main.yaml").write_text(common + "methods: [classifier-only]\n")
    (suites_dir / "abl.yaml").write_text(
        common + "leaderboard: own\ndescription: two variants\nruns:\n"
        "  - {method: classifier-only, label: reference}\n"
        "  - {method: dfsbir, label: dfsbir no bn, set: {params.weights.bn: 0, params.rounds: 2}}\n"
    )
    (suites_dir / "reported" / "paper.yaml").write_text("source: A paper\nmethods:\n  dfsbir: {sketchy: 0.8}\n")
    runner = CliRunner()
    for suite in ("main", "abl"):
        res = runner.invoke(cli, ["bench", str(suites_dir / f"{suite}.yaml"), "--quiet", "--results", str(results)])
        assert res.exit_code == 0, res.output
    # the reference run was skipped by 'abl' (the 'main' suite made that record): one record each
    records = [json.loads(p.read_text()) for p in results.rglob("*.json") if p.name != "split.json"]
    assert sorted((r["method"], r["suite"]["name"]) for r in records) == [("classifier-only", "main"), ("dfsbir", "abl")]
    # a row of the suite that has no record at all still shows, unranked, with 0 of its seeds
    with (suites_dir / "abl.yaml").open("a") as f:
        f.write("  - {method: dfsbir, label: dfsbir never run, set: {params.rounds: 3}}\n")
    res = runner.invoke(cli, ["leaderboard", "--results", str(results), "--out", str(out), "--suites", str(suites_dir)])
    assert res.exit_code == 0, res.output
    own = (out / "abl.md").read_text()
    assert own.index("| reference ") < own.index("| dfsbir no bn ") < own.index("| dfsbir never run ")
    lines = {line.split("|")[2].strip(): line for line in own.splitlines() if line.startswith("| ") and line.count("|") > 4}
    assert "1/1" in lines["reference"] and "incomplete" not in lines["reference"] and "incomplete" not in lines["dfsbir no bn"]
    assert lines["reference"].split("|")[4].strip() == "+0.0000"  # cells as formatted, not re-read as numbers (0)
    assert "0/1" in lines["dfsbir never run"] and "incomplete" in lines["dfsbir never run"]
    assert lines["dfsbir never run"].split("|")[1].strip() in ("", "-")  # no rank
    shapes = (out / "shapes.md").read_text()
    assert "| classifier-only " in shapes and "dfsbir" not in shapes
    overview = (out / "README.md").read_text()
    assert "| dfsbir (reported*) " in overview and "0.800" in overview and "[abl](abl.md)" in overview
    assert runner.invoke(cli, ["leaderboard", "--results", str(results), "--out", str(out), "--suites", str(suites_dir), "--check"]).exit_code == 0
    # a malformed file of reported numbers is a one-paragraph error, exit 2
    (suites_dir / "reported" / "paper.yaml").write_text("source: A paper\nmethods: [dfsbir]\n")
    res = runner.invoke(cli, ["leaderboard", "--results", str(results), "--out", str(out), "--suites", str(suites_dir)])
    assert res.exit_code == 2 and "methods" in res.output


def test_dataset_rows_expect_the_suites_seeds_and_former_defaults_move_to_their_ablation():
    from dfbench.app import leaderboard as lb
    from dfbench.app.records import SCHEMA

    def rec(chash, seed, suite=None):
        return {"schema": SCHEMA, "dataset": "d", "method": "m", "config_hash": chash, "seed": seed, "status": "completed",
                "profile": "cpu", "suite": suite, "timing": {"total": 1.0},
                "metrics": {"mAP@all": 0.5 + seed / 100, "mAP@200": 0.5, "P@100": 0.5, "P@200": 0.5}}

    records = [rec("new", 0), rec("old", 0, {"name": "main", "label": "m", "seeds": [0, 1]}), rec("old", 1, {"name": "main", "label": "m", "seeds": [0, 1]})]
    ablation = lb.SuiteTable("abl", "", [0, 1], [("m", "d", "m", "new", "cpu"), ("m former default", "d", "m", "old", "cpu")])
    files = lb.render(records, suite_tables=[ablation], dataset_keys={("d", "m", "new"): 2})
    # the plain run of the suite's config counts against the suite's two seeds
    assert "| 1/2 " in files["d.md"] and "`new`" in files["d.md"]
    # the former default config lives on in the ablation only
    assert "`old`" not in files["d.md"] and "| m former default " in files["abl.md"] and "2/2" in files["abl.md"]


def test_code_state_names_commit_and_uncommitted_diff(monkeypatch):
    from dfbench.app import records

    answers = {"rev-parse": "abc123\n", "diff": ""}
    monkeypatch.setattr(records, "_git", lambda *args: answers[args[0]])
    assert records.code_state() == "abc123"
    answers["diff"] = "--- a/x.py\n+++ b/x.py\n+one edit\n"
    first = records.code_state()
    answers["diff"] = "--- a/x.py\n+++ b/x.py\n+another edit\n"
    second = records.code_state()
    assert first.startswith("abc123-dirty-") and second.startswith("abc123-dirty-") and first != second
    answers["rev-parse"] = None  # not a git checkout (an installed package)
    assert records.code_state() is None

@pytest.mark.slow

def test_bench_records_and_warns_when_the_checkout_changes_under_it(tmp_path, monkeypatch):
    """A long bench imports plugin modules lazily: a checkout changed midway mixes two code states.
    Records keep the state the process started with and name the new one; the bench warns once."""
    from dfbench.app import records, runner

    state = {"now": "commit-A"}
    monkeypatch.setattr(records, "code_state", lambda: state["now"])
    monkeypatch.setattr(records, "_pinned_state", [])
    original = runner.execute_resolved

    def run_then_edit(*args, **kwargs):
        outcome = original(*args, **kwargs)
        state["now"] = "commit-B"  # someone commits while the bench runs
        return outcome

    monkeypatch.setattr(runner, "execute_resolved", run_then_edit)
    (tmp_path / "grid.yaml").write_text("profile: smoke\nseeds: [0, 1, 2]\ndatasets: [shapes]\nruns:\n  - {method: classifier-only}\n")
    res = CliRunner().invoke(cli, ["bench", str(tmp_path / "grid.yaml"), "--results", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    # it ends with its results table: one row per seed, read back from the records
    table = res.stdout[res.stdout.index("suite grid"):]
    assert [line.split("│")[3].strip() for line in table.splitlines() if "classifier-only" in line] == ["0", "1", "2"]
    assert res.output.count("WARNING: the checkout changed since this bench started (commit-A -> commit-B)") == 1
    envs = {r["seed"]: r["env"] for r in map(json.loads, map(Path.read_text, (tmp_path / "r").rglob("*-s?.json")))}
    assert sorted(envs) == [0, 1, 2]
    assert all(env["git_commit"] == "commit-A" for env in envs.values())
    assert "code_changed_since_start" not in envs[0]
    assert envs[1]["code_changed_since_start"] == envs[2]["code_changed_since_start"] == "commit-B"
    # the leaderboard counts them, and says what the count means
    runner = CliRunner()
    assert runner.invoke(cli, ["leaderboard", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "lb")]).exit_code == 0
    table = (tmp_path / "lb" / "shapes.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| - ") and "classifier-only" in line)  # smoke: unranked
    assert "3/3 (2 mixed code)" in row
    assert "`(k mixed code)`" in table


def test_run_suite_is_the_library_behind_bench(tmp_path):
    """dfbench.app.runner.run_suite on the smoke suite writes the records 'dfbench bench' writes (same
    paths, metrics and config hashes); a second call skips them; a dry run lists them done."""
    from dfbench.app.runner import run_suite

    spec = suites.load_suite(REPO / "benchmarks" / "smoke.yaml", ["classifier-only", "dfsbir"])
    spec.items = [suites.SuiteItem(i.method, i.dataset, i.seed, i.profile, i.label, i.overrides + ["params.rounds=2"] * (i.method == "dfsbir"))
                  for i in spec.items]
    lib = run_suite(spec, results=tmp_path / "lib")
    assert [r.status for r in lib.runs] == ["completed", "completed"] and not lib.failed()
    suite_file = tmp_path / "smoke.yaml"
    suite_file.write_text((REPO / "benchmarks" / "smoke.yaml").read_text().replace("methods: all", "methods: [classifier-only, dfsbir]")
                          .replace("set:\n", "runs:\n  - {method: classifier-only}\n  - {method: dfsbir, set: {params.rounds: 2}}\nset:\n"))
    res = CliRunner().invoke(cli, ["bench", "--suite", str(suite_file), "--quiet", "--results", str(tmp_path / "cli")])
    assert res.exit_code == 0 and "2 completed, 0 skipped, 0 failed" in res.output, res.output
    for r in lib.runs:
        mine = r.record()
        theirs = json.loads((tmp_path / "cli" / r.path.relative_to(tmp_path / "lib")).read_text())
        assert (mine["metrics"], mine["config_hash"], mine["suite"]) == (theirs["metrics"], theirs["config_hash"], theirs["suite"])
    again = run_suite(spec, results=tmp_path / "lib")
    assert [r.status for r in again.runs] == ["skipped", "skipped"]
    assert [r.status for r in run_suite(spec, results=tmp_path / "lib", dry_run=True).runs] == ["done", "done"]


def _script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _committed(dataset: str, label: str) -> dict:
    """{seed: record} of one committed suite row."""
    rows = {}
    for path in (REPO / "leaderboards" / "records" / dataset).glob("*/*.json"):
        record = json.loads(path.read_text())
        if (record.get("suite") or {}).get("label") == label and record.get("status") == "completed":
            rows[record["seed"]] = record
    return rows


def test_verdict_prints_the_mean_paired_difference_of_the_committed_records(capsys):
    """benchmarks/verdict.py's first pair is the mean over seeds of the per-seed mAP@all differences,
    recomputed here from the committed records themselves."""
    a, b = _committed("qd-cifar10", "dfsbir (proxy)"), _committed("qd-cifar10", "classifier-only (probs)")
    seeds = sorted(set(a) & set(b))
    if not seeds:
        pytest.skip("no committed records of the verdict's first pair")
    _script("verdict").main(["--dataset", "qd-cifar10"])
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("| dfsbir (proxy) ") and "| classifier-only (probs) " in l)
    cells = [c.strip() for c in line.strip("|").split("|")]
    expected = sum(a[s]["metrics"]["mAP@all"] - b[s]["metrics"]["mAP@all"] for s in seeds) / len(seeds)
    assert cells[2] == str(len(seeds)) and float(cells[3]) == pytest.approx(expected, abs=1e-4)
    assert "Every other data-free row against `classifier-only (probs)`" in out or "Other rows not yet measured" in out


@pytest.mark.parametrize("deltas, call", [
    ([+0.01, +0.02, +0.001], "the release's value"),
    ([-0.06, -0.05, -0.07], "the cpu value"),
    ([+0.014, +0.013, -0.005], "no difference (seeds disagree)"),  # a positive mean is not a preference
    ([+0.02, +0.03], "undecided (2 of 3 seeds)"),
])
def test_a_fidelity_value_is_preferred_only_when_every_seed_agrees(deltas, call):
    assert _script("verdict").fidelity_call(deltas) == call


def test_suite_cost_names_rows_whose_records_carry_cpu_time_only_in_part():
    cell = _script("suite_cost")._cpu_cell
    assert cell([None, None]) == "-"
    assert cell([3600.0, 1800.0]) == "1.50"
    assert cell([3600.0, None, 1800.0]) == "1.50 (2/3 runs)"


def test_suite_cost_scales_an_estimate_from_another_budget_by_its_training_phase():
    script = _script("suite_cost")
    assert script._budget(["data.image_size=64", "params.budget=51200"]) == 51200
    assert script._budget(["params.rounds=100000"]) is None
    # a 1x run of 730 s, 725 of them training: a 4x run trains 4 x 725 s and keeps the other 5 s
    assert script._scaled((730.0, 725.0, 51200), 204800) == pytest.approx(5 + 4 * 725)
    assert script._scaled((730.0, 725.0, 51200), 51200) == 730.0
    assert script._scaled((6.0, 0.0, None), 204800) == 6.0  # a run with no budget is not scaled


def test_suite_cost_sums_the_records_wall_times(shared_data, capsys):
    """benchmarks/suite_cost.py: a row's seeds done and hours are those of its committed records."""
    done = _committed("qd-cifar10", "dfsbir (proxy)")
    if not done:
        pytest.skip("no committed dfsbir (proxy) records")
    _script("suite_cost").main(["qd-cifar10"])
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("| dfsbir (proxy) |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == f"{len(done)}/3"
    assert float(cells[4]) == pytest.approx(sum(r["timing"]["total"] for r in done.values()) / 3600, abs=0.006)
    last = out.splitlines()[-1]
    assert "an upper bound on CPU-hours" in last
    # one row per method: the method's first row, so dfsbir counts its (proxy) row and not its variants
    first = {}
    for l in out.splitlines()[2:]:
        if l.startswith("| ") and "|---" not in l:
            c = [x.strip() for x in l.strip("|").split("|")]
            method = c[0].split(" (")[0]
            todo = 0.0 if c[5] in ("-", "?") else float(c[5].lstrip("~"))
            first.setdefault(method, float(c[4]) + todo)
    per_method = float(last.split("One row per method")[1].split("about ")[1].split(" h")[0])
    assert per_method == pytest.approx(sum(first.values()), abs=0.1)
    # every run at its row's fastest: never above the sum of the runs done and to do
    fastest = next(l for l in out.splitlines() if l.startswith("Every run at its row's fastest run"))
    assert float(fastest.split("about ")[1].split(" h")[0]) <= float(last.split(" h in all")[0].split("about ")[-1]) + 0.05
