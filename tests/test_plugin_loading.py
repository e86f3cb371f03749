"""Loading rules, through real (throwaway) distributions run by the real CLI in subprocesses.

Each test writes distributions into a folder of its own (a ``*.dist-info`` with an
``entry_points.txt`` in the ``dfbench`` group, and the module it names) and puts that folder on
``PYTHONPATH``: ``importlib.metadata`` finds them exactly as it finds pip-installed packages.

- a plugin that fails to import, fails while registering, or implements an unknown hook is listed
  with its error by ``dfbench plugins`` while ``--help``, ``list`` and ``run`` keep working;
- ``DFBENCH_LOAD_PLUGINS=a,b`` loads the built-ins and only the named plugins (empty: built-ins only);
- two plugins registering the same name: an error naming both;
- ``dfbench --help`` and ``dfbench list`` import no torch;
- docs/plugins.md documents every hookspec.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import load_plugins_env, site_plugins

REPO = Path(__file__).resolve().parent.parent
TINY = ["--set", "data.options.train_per_class=24", "--set", "data.options.test_per_class=12"]

BROKEN_IMPORT = """
raise ImportError("the broken plugin needs missing_dependency_of_the_broken_plugin, which is not installed")
"""

CRASHES_WHILE_REGISTERING = """
from dfbench import hookimpl


@hookimpl
def dfbench_register_losses(register):
    raise RuntimeError("the crashy plugin crashed while registering")
"""

UNKNOWN_HOOK = """
from dfbench import hookimpl


@hookimpl
def dfbench_register_metric(register):  # no such hookspec (dfbench_register_metrics neither)
    register("x", "y:z")
"""

GOOD = """
from dfbench import hookimpl


@hookimpl
def dfbench_register_losses(register):
    register("good-loss", "good_plugin_impl:GoodLoss", description="a lazily registered loss")
"""


def dup_module(plugin: str) -> str:
    return f"""
from dfbench import hookimpl


@hookimpl
def dfbench_register_methods(register):
    register("twin", "nowhere_{plugin}:Twin", description="registered by {plugin}")
"""


def make_dist(site: Path, dist: str, entry_point: str, module: str, source: str) -> None:
    """A minimal installed distribution: ``<dist>-0.1.dist-info`` and the module it points at."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[dfbench]\n{entry_point} = {module}\n")


def dfbench(args: list[str], site: Path, cwd: Path, env: dict | None = None, timeout: float = 300):
    """``python -m dfbench ARGS`` with ``site`` on the path, in a fresh interpreter, loading the
    built-ins and the distributions in ``site`` only (``env`` may say otherwise)."""
    full = {**os.environ, **load_plugins_env(*site_plugins(site))}
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "dfbench", *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=timeout)


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    make_dist(folder, "dfbench-broken-example", "broken", "broken_plugin", BROKEN_IMPORT)
    make_dist(folder, "dfbench-crashy-example", "crashy", "crashy_plugin", CRASHES_WHILE_REGISTERING)
    make_dist(folder, "dfbench-misspelt-example", "misspelt", "misspelt_plugin", UNKNOWN_HOOK)
    make_dist(folder, "dfbench-good-example", "good", "good_plugin", GOOD)
    return folder


def plugins_json(site: Path, cwd: Path, env: dict | None = None) -> dict:
    out = dfbench(["plugins", "--json"], site, cwd, env)
    assert out.returncode == 0, out.stderr
    return {row["name"]: row for row in json.loads(out.stdout)}


def test_broken_plugins_are_listed_and_the_cli_keeps_working(site, tmp_path):
    helped = dfbench(["--help"], site, tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "run" in helped.stdout and "check-plugin" in helped.stdout

    listed = dfbench(["list", "--json"], site, tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {(r["kind"], r["name"]) for r in json.loads(listed.stdout)}
    assert ("methods", "dfsbir") in names and ("losses", "good-loss") in names
    for name in ("broken", "crashy", "misspelt"):
        assert f"plugin '{name}' failed to load" in listed.stderr

    rows = plugins_json(site, tmp_path)
    assert "ImportError" in rows["broken"]["error"] and "missing_dependency_of_the_broken_plugin" in rows["broken"]["error"]
    assert rows["broken"]["distribution"] == "dfbench-broken-example" and rows["broken"]["version"] == "0.1"
    assert "crashed while registering" in rows["crashy"]["error"]
    assert "dfbench_register_metric" in rows["misspelt"]["error"]
    assert rows["good"]["error"] is None and rows["dfsbir"]["error"] is None

    table = dfbench(["plugins"], site, tmp_path)
    assert table.returncode == 0 and "broken" in table.stdout

    ran = dfbench(["run", "--method", "dfsbir", "--profile", "smoke", "--quiet", "--json", "--results", str(tmp_path / "res"), *TINY], site, tmp_path)
    assert ran.returncode == 0, ran.stderr
    [record] = json.loads(ran.stdout)
    assert record["status"] == "completed"
    assert "plugin 'broken' failed to load" in ran.stderr  # said once, as a warning


def test_check_plugin_reports_a_plugin_that_failed_to_import(site, tmp_path):
    out = dfbench(["check-plugin", "broken", "--json", "-q"], site, tmp_path)
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    [loads] = [c for c in report["checks"] if c["contract"] == "loads without error"]
    assert loads["status"] == "fail" and "ImportError" in loads["detail"]
    unknown = dfbench(["check-plugin", "brokn"], site, tmp_path)
    assert unknown.returncode == 2 and "Did you mean 'broken'" in unknown.stderr


@pytest.mark.parametrize(
    "wanted, present, absent",
    [
        ("", set(), {"broken", "crashy", "misspelt", "good", "example"}),
        ("good", {"good"}, {"broken", "crashy", "misspelt", "example"}),
        (" broken , good ", {"broken", "good"}, {"crashy", "misspelt", "example"}),
        ("dfbench-good-example", {"good"}, {"broken", "crashy", "misspelt", "example"}),  # a distribution's name
        ("DFBench_Good.Example,nothing-by-this-name", {"good"}, {"broken", "crashy", "misspelt", "example"}),  # normalised as pip does
    ],
)
def test_load_plugins_limits_loading_to_the_named_plugins(site, tmp_path, wanted, present, absent):
    rows = plugins_json(site, tmp_path, {"DFBENCH_LOAD_PLUGINS": wanted})
    third_party = {name for name, row in rows.items() if not row["builtin"]}
    assert third_party == present
    assert not absent & set(rows)
    assert {"datasets", "teachers", "alignment", "inversions", "dfsbir"} <= set(rows)  # built-ins always load
    listed = dfbench(["list", "--kind", "losses", "--json"], site, tmp_path, {"DFBENCH_LOAD_PLUGINS": wanted})
    assert listed.returncode == 0
    assert ("good-loss" in {r["name"] for r in json.loads(listed.stdout)}) == ("good" in present)
    assert ("failed to load" in listed.stderr) == ("broken" in present)


def test_two_plugins_registering_one_name_give_an_error_naming_both(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "dfbench-dup-a", "dup-a", "dup_a_plugin", dup_module("dup-a"))
    make_dist(site, "dfbench-dup-b", "dup-b", "dup_b_plugin", dup_module("dup-b"))
    listed = dfbench(["list", "--kind", "methods", "--json"], site, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "dfsbir" in {r["name"] for r in json.loads(listed.stdout)}
    assert "'dup-a' and 'dup-b'" in listed.stderr
    rows = plugins_json(site, tmp_path)
    assert "'twin'" in rows["dup-b"]["error"] and "'dup-a'" in rows["dup-b"]["error"]
    ran = dfbench(["run", "--method", "twin", "--profile", "smoke"], site, tmp_path)
    assert ran.returncode == 2
    assert "twin" in ran.stderr and "'dup-a'" in ran.stderr and "'dup-b'" in ran.stderr
    assert "Traceback" not in ran.stderr


def imported_modules(args: list[str], site: Path, cwd: Path) -> set[str]:
    """Every module imported by the time ``dfbench ARGS`` exits (run as the console script does)."""
    code = textwrap.dedent(
        f"""
        import atexit, json, sys
        atexit.register(lambda: print("MODULES=" + json.dumps(sorted(sys.modules)), file=sys.stderr))
        sys.argv = ["dfbench", *{args!r}]
        from dfbench.app.cli import main
        main()
        """
    )
    full = {**os.environ, **load_plugins_env(*site_plugins(site))}
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, cwd=cwd, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    [line] = [line for line in out.stderr.splitlines() if line.startswith("MODULES=")]
    return set(json.loads(line[len("MODULES="):]))


@pytest.mark.parametrize("args", [["--help"], ["list"], ["plugins"]])
def test_startup_imports_no_torch_with_every_plugin_installed(site, tmp_path, args):
    modules = imported_modules(args, site, tmp_path)
    assert "dfbench.app.cli" in modules and "good_plugin" in modules
    heavy = {m for m in modules if m.split(".")[0] in ("torch", "torchvision", "numpy", "pandas", "matplotlib")}
    assert not heavy, f"'dfbench {' '.join(args)}' imports {sorted(heavy)[:5]}"


def test_every_hookspec_is_documented():
    from dfbench.api import hookspecs

    doc = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    specs = [(name, fn) for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "dfbench_spec")]
    assert specs, "no hookspecs found"
    for name, fn in specs:
        signature = f"{name}{inspect.signature(fn)}"
        assert signature in doc, f"docs/plugins.md does not document the hookspec {signature}"
        assert re.search(rf"^#+ .*`?{name}", doc, re.M), f"docs/plugins.md has no heading for {name}"
    for interface in ("DatasetPlugin", "TeacherLoader", "InversionStrategy", "AlignmentLoss", "Method"):
        assert f"`{interface}`" in doc or f"class {interface}" in doc, interface
