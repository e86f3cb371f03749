"""Trust, second round (issue 30, items 5, 7 and 8; docs/reliability.md, docs/security.md).

- item 5: a name that becomes a path is checked (:func:`dfbench.api.fileio.safe_component`): a
  record's dataset, method, suite, artifacts and pictures, a plugin's component names, a suite's
  name; a string that becomes markdown or rich markup is escaped;
- item 7: a distribution posing as dfbench hides nothing, a look-alike of a built-in name is
  refused, a record names the distribution and module of its method, a malformed entry point is
  one clear line;
- item 8: duplicate YAML keys, pathological nesting, wrong-typed head keys and ``_base_``, and every
  row of a suite in ``bench --dry-run`` give one-paragraph errors with exit status 2.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from conftest import sealed
from click.testing import CliRunner

from dfbench.app.cli import cli
from dfbench.app.records import METRIC_KEYS, BadRecordWarning

REPO = Path(__file__).resolve().parent.parent


def _record(n: int = 0, **changes) -> dict:
    rec = {
        "schema": "dfbench.run/1", "run_id": f"0123456789ab-s{n}", "method": "dfsbir", "dataset": "shapes",
        "profile": "smoke", "seed": n, "status": "completed", "error": None, "config_hash": "0123456789ab",
        "metrics": {k: 0.5 for k in METRIC_KEYS}, "timing": {"total": 1.0},
    }
    rec.update(changes)
    return sealed(rec) if "config_hash" in rec else rec


def _one_paragraph_error(output: str) -> str:
    """The ``Error:`` paragraph of a command's output (warnings may precede it): exactly one line."""
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    assert "Traceback" not in output, output
    return errors[0]


def _files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


# -- item 5: a record never decides where a leaderboard writes, nor what its markdown holds -----

ESCAPING_NAMES = {
    "dataset-up-and-out": ({"dataset": "../../../../escaped"}, "its dataset '../../../../escaped' cannot name a leaderboard page"),
    "dataset-absolute": ({"dataset": "/tmp/escaped-abs"}, "its dataset '/tmp/escaped-abs' cannot name"),
    "dataset-README": ({"dataset": "README"}, "'README' is reserved"),
    "dataset-readme-any-case": ({"dataset": "readme.md"}, "'readme' is reserved"),
    "dataset-hidden": ({"dataset": ".git"}, "it starts with a dot"),
    "dataset-with-a-pipe": ({"dataset": "a|b"}, "'|'"),
    "dataset-newline": ({"dataset": "a\nb"}, "control or invisible character '\\n'"),
    "dataset-not-a-string-but-valid-elsewhere": ({"dataset": "x" * 101}, "101 characters long"),
    "method-up-and-out": ({"method": "../../../escaped"}, "its method '../../../escaped' cannot name"),
    "suite-name-up-and-out": ({"suite": {"name": "../../escaped", "label": "x", "seeds": [0]}}, "its suite name '../../escaped'"),
    "artifacts-absolute": ({"artifacts": "/etc"}, "is an absolute path"),
    "artifacts-up": ({"artifacts": "../../../etc"}, "its artifacts folder '../../../etc' has the part '..'"),
    "picture-up": ({"artifacts": "shapes/dfsbir/0123456789ab-s1", "pictures": ["../../x.png"]}, "its picture '../../x.png'"),
    "pictures-not-a-list": ({"pictures": "pairs.png"}, "its 'pictures' is a str, not a list"),
}


@pytest.mark.parametrize("case", list(ESCAPING_NAMES))
def test_a_record_naming_a_path_out_is_named_and_left_out(tmp_path, case):
    changes, reason = ESCAPING_NAMES[case]
    results = tmp_path / "deep" / "er" / "results"
    folder = results / "shapes" / "dfsbir"
    folder.mkdir(parents=True)
    (folder / "0123456789ab-s0.json").write_text(json.dumps(_record(0)))
    bad = folder / "0123456789ab-s1.json"
    bad.write_text(json.dumps(_record(1, **changes)))
    out = tmp_path / "deep" / "er" / "boards"
    before = _files_under(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = CliRunner().invoke(cli, ["leaderboard", "--results", str(results), "--out", str(out), "--suites", str(tmp_path / "none")])
    assert res.exit_code == 0, res.output
    messages = [str(w.message) for w in caught if issubclass(w.category, BadRecordWarning)]
    assert len(messages) == 1 and messages[0].startswith(f"leaving out {bad}: ") and reason in messages[0], messages
    written = _files_under(tmp_path) - before
    assert written == {"deep/er/boards", "deep/er/boards/README.md", "deep/er/boards/shapes.md"}, written
    assert "# Leaderboards" in (out / "README.md").read_text()  # the overview, never a dataset page
    assert not Path("/tmp/escaped-abs.md").exists()


HOSTILE_TEXT = {
    "pipe-forges-a-cell": ("x | 0.9999 | forged", "x \\| 0.9999 \\| forged"),
    "newline-forges-a-row": ("x\n| 1 | forged | row |", "x \\| 1 \\| forged \\| row \\|"),
    "raw-html": ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    "backticks-and-links": ("`code` [link](http://x)", "\\`code\\` \\[link\\](http://x)"),
    "backslash-before-pipe": ("a\\|b", "a\\\\\\|b"),
}


@pytest.mark.parametrize("case", list(HOSTILE_TEXT))
def test_a_label_becomes_one_escaped_markdown_cell(tmp_path, case):
    label, escaped = HOSTILE_TEXT[case]
    folder = tmp_path / "results" / "shapes" / "dfsbir"
    folder.mkdir(parents=True)
    for n in (0, 1):
        (folder / f"0123456789ab-s{n}.json").write_text(json.dumps(_record(n, suite={"name": "mine", "label": label, "seeds": [0, 1]})))
    out = tmp_path / "boards"
    res = CliRunner().invoke(cli, ["leaderboard", "--results", str(tmp_path / "results"), "--out", str(out), "--suites", str(tmp_path / "none")])
    assert res.exit_code == 0, res.output
    for page in ("shapes.md", "README.md"):
        text = (out / page).read_text()
        assert escaped in text, text
        assert "<script>" not in text
        table = [line for line in text.splitlines() if line.startswith("|")]
        widths = {len(line.replace("\\|", "").split("|")) for line in table}
        assert len(widths) == 1, table  # every row has as many cells as the header: nothing forged


MARKUP = "[bold red]x[/bold red] [/] [link=file:///etc/passwd]y[/link]"


def test_results_and_compare_show_rich_markup_as_text(tmp_path):
    folder = tmp_path / "results" / "shapes" / "dfsbir"
    folder.mkdir(parents=True)
    for n in (0, 1):
        rec = _record(n, profile=MARKUP, config={"params": {"readout": MARKUP, "n": n}})
        (folder / f"0123456789ab-s{n}.json").write_text(json.dumps(rec))
    listed = CliRunner().invoke(cli, ["results", "--results", str(tmp_path / "results")])
    assert listed.exit_code == 0, listed.output
    compared = CliRunner().invoke(cli, ["results", "--results", str(tmp_path / "results"), "--compare"])
    assert compared.exit_code == 0, compared.output
    assert "[/]" in compared.output and "[bold red]x[/bold red]" in compared.output  # shown, not interpreted


def test_a_markup_class_name_in_the_queries_view_is_text(tmp_path):
    import gzip

    folder = tmp_path / "shapes" / "dfsbir"
    (folder / "0123456789ab-s0").mkdir(parents=True)
    rec = _record(0, data={"classes": ["[/]", "[bold]cat"]})
    (folder / "0123456789ab-s0.json").write_text(json.dumps(rec))
    with gzip.open(folder / "0123456789ab-s0" / "queries.csv.gz", "wt") as fh:
        fh.write("query,label,AP,top\n0,0,0.5,1 2\n1,1,0.25,0 2\n")
    res = CliRunner().invoke(cli, ["results", "--queries", str(folder / "0123456789ab-s0.json")])
    assert res.exit_code == 0, res.output
    assert "[/]" in res.output and "[bold]cat" in res.output


@pytest.mark.parametrize("name, fragment", [
    ("../../../escaped", "'/'"), ("/abs/method", "'/'"), ("README", "reserved"), (".hidden", "starts with a dot"),
    ("a\nb", "'\\n'"), ("a:b", "':'"), ("DFSBIR", "looks like the built-in 'dfsbir'"),
    ("df_sbir", "looks like the built-in 'dfsbir'"), ("ｄｆｓｂｉｒ", "looks like the built-in 'dfsbir'"),
])
def test_a_plugin_component_with_an_unsafe_or_look_alike_name_is_refused(name, fragment):
    from dfbench.api.plugins import PluginSystem
    from dfbench import hookimpl

    class Plugin:
        @hookimpl
        def dfbench_register_methods(self, register):
            register(name, "nowhere:Escaper", description="writes its record elsewhere")

    system = PluginSystem()
    system.register_plugin(Plugin(), name="escaper")
    assert name not in system.registry("methods")
    assert "dfsbir" in system.registry("methods")  # the built-ins are untouched
    [broken] = [i for i in system.broken() if i.name == "escaper"]
    assert broken.error.startswith("while registering methods: Plugin 'escaper' tried to register the method")
    assert fragment in broken.error and "it was rejected" in broken.error, broken.error


def test_a_run_plan_never_leaves_the_results_folder(tmp_path):
    from dfbench.api.errors import UnsafeNameError
    from dfbench.app.runner import RunPlan

    with pytest.raises(UnsafeNameError, match="The run's method '../../../escaped' cannot name a file or folder"):
        RunPlan.of({"dataset": "shapes", "method": "../../../escaped", "seed": 0, "data": {"root": None}}, tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_suite_name_that_is_no_safe_page_name_is_an_error(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: ../../escaped\nmethods: [classifier-only]\nprofile: smoke\n")
    res = CliRunner().invoke(cli, ["bench", "--suite", str(suite), "--dry-run", "--results", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert "'name' in suite" in _one_paragraph_error(res.output) and "cannot name a leaderboard page" in res.output


def test_a_leaderboard_page_name_is_checked_when_written(tmp_path):
    from dfbench.api.errors import UnsafeNameError
    from dfbench.app.leaderboard import write

    with pytest.raises(UnsafeNameError):
        write({"../escaped.md": "x"}, tmp_path / "out")
    assert not (tmp_path / "escaped.md").exists()


# -- item 7: plugins cannot pose as dfbench -----------------------------------------------------


def _dist(site: Path, dist: str, entry_points: dict, modules: dict) -> None:
    """An installed distribution ``dist`` 0.1.0 with ``entry_points`` ({name: value}) in the dfbench
    group and ``modules`` ({module: source}) beside it."""
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[dfbench]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)


FAKE_DFSBIR = """
import os, pathlib
pathlib.Path(os.environ["DFBENCH_TEST_MARKER"]).touch()
from dfbench import hookimpl

@hookimpl
def dfbench_register_methods(register):
    register("dfsbir", "nowhere:Fake", description="a fake dfsbir")
    register("fake-only", "nowhere:Fake", description="only the fake has it")
"""


@pytest.mark.parametrize("dist_name", ["dfbench", "DFBench", "DfBench"])
def test_a_distribution_posing_as_dfbench_hides_no_builtin(tmp_path, dist_name):
    from test_plugin_loading import dfbench as dfbench_process

    site = tmp_path / "site"
    _dist(site, dist_name, {"dfsbir": "fake_dfsbir", "extra": "fake_dfsbir"}, {"fake_dfsbir": FAKE_DFSBIR})
    marker = tmp_path / "imported"
    env = {"DFBENCH_TEST_MARKER": str(marker)}
    out = dfbench_process(["plugins", "--json"], site, tmp_path, env)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["dfsbir"]["builtin"] and rows["dfsbir"]["distribution"] == "dfbench" and rows["dfsbir"]["error"] is None
    fakes = [r for r in rows.values() if r["distribution"] == dist_name and not r["builtin"]]
    assert len(fakes) == 2, rows
    for fake in fakes:
        assert f"its distribution is named '{dist_name}' like dfbench itself, but it is not the dfbench being run" in fake["error"]
        assert str(site) in fake["error"] and "was not loaded" in fake["error"]
    assert not marker.exists(), "the posing distribution is never imported"
    listed = dfbench_process(["list", "--kind", "methods", "--json"], site, tmp_path, env)
    names = {r["name"]: r for r in json.loads(listed.stdout)}
    assert len(names) >= 15 and "fake-only" not in names and names["dfsbir"]["description"] != "a fake dfsbir"


def test_a_record_names_the_distribution_and_module_of_its_method(tmp_path):
    """The record's ``components`` (dfbench.app.runner.components_used) of a third-party method."""
    import subprocess
    import sys

    site = tmp_path / "site"
    _dist(site, "dfbench-other", {"other": "other_plugin"}, {"other_plugin": (
        "from dfbench import hookimpl\n\n@hookimpl\ndef dfbench_register_methods(register):\n"
        "    register('other-method', 'other_impl:Other')\n")})
    code = ("import json; from dfbench.api.plugins import component_origin as o; "
            "print(json.dumps([o('methods', 'other-method'), o('methods', 'dfsbir')]))")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    other, builtin = json.loads(out.stdout)
    assert other == {"name": "other-method", "plugin": "other", "distribution": "dfbench-other", "version": "0.1.0",
                     "builtin": False, "module": "other_impl"}
    assert builtin["distribution"] == "dfbench" and builtin["builtin"] and builtin["module"] == "dfbench_dfsbir.method"


MALFORMED_ENTRY_POINTS = {
    "not-module-attr": ("not a valid spec!", {}, "its entry point 'odd = not a valid spec!' is malformed: the value must be 'module' or 'module:attribute'"),
    "attribute-is-none": ("none_mod:NOTHING", {"none_mod": "NOTHING = None\n"}, "its entry point 'odd = none_mod:NOTHING' names None, not a module"),
    "module-without-hooks": ("plain_mod", {"plain_mod": "x = 1\n"}, "its entry point 'odd = plain_mod' names a module that defines no dfbench hook"),
    "attribute-missing": ("plain_mod:absent", {"plain_mod": "x = 1\n"}, "its entry point 'odd = plain_mod:absent' could not be loaded (AttributeError: module 'plain_mod' has no attribute 'absent')"),
    "module-missing": ("no_such_module_anywhere", {}, "its entry point 'odd = no_such_module_anywhere' could not be loaded (ModuleNotFoundError"),
}


@pytest.mark.parametrize("case", list(MALFORMED_ENTRY_POINTS))
def test_a_malformed_entry_point_is_one_clear_line(tmp_path, case):
    from test_plugin_loading import dfbench as dfbench_process

    value, modules, error = MALFORMED_ENTRY_POINTS[case]
    site = tmp_path / "site"
    _dist(site, "dfbench-odd", {"odd": value}, modules)
    out = dfbench_process(["list", "--kind", "datasets"], site, tmp_path)
    assert out.returncode == 0 and "shapes" in out.stdout, out.stderr
    [warning] = [line for line in out.stderr.splitlines() if "plugin 'odd'" in line]
    assert error in warning and "NoneType" not in warning and "Traceback" not in out.stderr, warning
