"""``dfbench new-plugin``: the generated package's own test passes, and ``check-plugin`` accepts its
plain, teacher-less method when run from a folder that holds a dfbench checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, load_plugins_env, write_dist_info

from dfbench.app.cli import cli


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """dfbench-mine generated into a temporary folder, and the PYTHONPATH that shows it to a
    subprocess as an installed distribution (its dist-info and src first; nothing is installed)."""
    parent = tmp_path_factory.mktemp("plugins")
    res = CliRunner().invoke(cli, ["new-plugin", "mine", "--dir", str(parent)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    root = parent / "dfbench-mine"
    site = write_dist_info(tmp_path_factory.mktemp("site"), "dfbench-mine", "0.1.0", {"mine": "dfbench_mine.plugin"})
    pythonpath = os.pathsep.join([str(site), str(root / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return root, pythonpath


def test_new_plugin_writes_an_installable_package(generated):
    root, _ = generated
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "README.md", "pyproject.toml", "src/dfbench_mine/__init__.py", "src/dfbench_mine/method.py",
        "src/dfbench_mine/plugin.py", "tests/conftest.py", "tests/test_plugin.py",
    ]
    import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["name"] == "dfbench-mine"
    assert project["entry-points"]["dfbench"] == {"mine": "dfbench_mine.plugin"}


def test_the_generated_test_passes(generated):
    root, pythonpath = generated
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root, capture_output=True, text=True,
        timeout=600, env={**os.environ, "PYTHONPATH": pythonpath, **load_plugins_env("mine")},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 passed" in out.stdout


def test_check_plugin_passes_a_teacherless_method_from_a_folder_holding_the_checkout(generated, tmp_path):
    """The folder holds the checkout as ./dfbench: a subprocess that put the current folder first on
    the import path would import that as a namespace package ('cannot import name hookimpl')."""
    _, pythonpath = generated
    (tmp_path / "dfbench").symlink_to(REPO, target_is_directory=True)
    # the user's 'dfbench' command does not put the current folder on the import path ('python -m'
    # would: -P, Python 3.11+, keeps it off, as the console script does); its subprocesses must not either
    if sys.version_info < (3, 11):
        pytest.skip("python -P needs Python 3.11")
    out = subprocess.run(
        [sys.executable, "-P", "-m", "dfbench", "check-plugin", "mine", "--json", "--quiet", "--device", "cpu"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": pythonpath, **load_plugins_env("mine")},
    )
    report = json.loads(out.stdout)
    failed = [c for c in report["checks"] if c["status"] != "pass"]
    assert out.returncode == 0 and not failed, failed or out.stderr[-2000:]
    assert {c["component"] for c in report["checks"]} == {"plugin mine", "method mine-pixels"}


@pytest.mark.parametrize("name", ["Mine", "my_method", "a--b", "9lives"])
def test_new_plugin_rejects_unusable_names(name, tmp_path):
    res = CliRunner().invoke(cli, ["new-plugin", name, "--dir", str(tmp_path)])
    assert res.exit_code == 2 and "is not usable" in res.output
    assert list(tmp_path.iterdir()) == []


def test_new_plugin_never_overwrites(tmp_path):
    (tmp_path / "dfbench-mine").mkdir()
    (tmp_path / "dfbench-mine" / "keep.txt").write_text("mine")
    res = CliRunner().invoke(cli, ["new-plugin", "mine", "--dir", str(tmp_path)])
    assert res.exit_code == 2 and "already exists" in res.output
    assert [p.name for p in (tmp_path / "dfbench-mine").iterdir()] == ["keep.txt"]


def test_docs_open_with_the_generated_plain_method():
    """docs/plugins.md shows exactly the code 'dfbench new-plugin mine' writes, before anything else."""
    from dfbench.app import scaffold

    docs = (REPO / "docs" / "plugins.md").read_text()
    generated = scaffold.files("mine")
    first_section = docs[docs.index("\n## "):]
    assert first_section.startswith("\n## Start here: the smallest plain method")
    for rel in ("src/dfbench_mine/method.py", "src/dfbench_mine/plugin.py"):
        assert f"```python\n{generated[rel].rstrip()}\n```" in docs, rel
    assert "class PixelsMethod(Method):" in generated["src/dfbench_mine/method.py"]  # plain, not data-free
