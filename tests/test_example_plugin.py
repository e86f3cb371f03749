"""The example plugin (plugins/dfbench-example) seen through a real distribution's entry point,
and ``dfbench check-plugin``.

Nothing is installed into the environment: the fixture writes a ``dfbench_example-<version>.dist-info``
record (METADATA, entry_points.txt) into a temporary folder and puts that folder and the example's
``src`` first on the import path, in this process and (through PYTHONPATH) in the subprocesses, so
``importlib.metadata`` finds the plugin exactly as it finds a pip-installed one.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import load_plugins_env, write_dist_info

from dfbench import hookimpl
from dfbench.api.alignment import AlignmentLoss
from dfbench.app.cli import cli
from dfbench.api.inversion import InversionStrategy, SynthBatch

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "plugins" / "dfbench-example"
TINY = ["--set", "data.options.train_per_class=24", "--set", "data.options.test_per_class=12"]


def _checkout_version() -> str:
    return re.search(r'^version\s*=\s*"([^"]+)"', (EXAMPLE / "pyproject.toml").read_text(), re.M).group(1)


@pytest.fixture(scope="module")
def example_dist(tmp_path_factory):
    """The checkout's dfbench-example as a distribution on the import path (first, so it wins over
    any installed copy), with a fresh plugin system that sees it; ``example_dist.pythonpath`` is the
    PYTHONPATH that shows it to a subprocess."""
    from dfbench.api import plugins

    site = write_dist_info(tmp_path_factory.mktemp("site"), "dfbench-example", _checkout_version(), {"example": "dfbench_example.plugin"})
    entries = [str(site), str(EXAMPLE / "src")]
    saved_path, saved_modules = list(sys.path), {k: v for k, v in sys.modules.items() if k.startswith("dfbench_example")}
    for k in saved_modules:
        del sys.modules[k]  # an installed copy imported earlier must not stand in for the checkout's
    sys.path[:0] = entries
    importlib.invalidate_caches()
    dist = metadata.distribution("dfbench-example")
    assert Path(dist.locate_file("")) == site, f"found {dist.locate_file('')}, not the checkout's record"
    saved_env, saved_load = os.environ.get("PYTHONPATH"), os.environ.get("DFBENCH_LOAD_PLUGINS")
    dist.pythonpath = os.pathsep.join([*entries, *filter(None, [saved_env])])
    os.environ["PYTHONPATH"] = dist.pythonpath  # check-plugin's own subprocesses see it too
    os.environ.update(load_plugins_env("example"))  # the tests opt in to the example (conftest: built-ins only)
    plugins.reset_plugins()
    yield dist
    plugins.reset_plugins()
    if saved_load is None:
        os.environ.pop("DFBENCH_LOAD_PLUGINS", None)
    else:
        os.environ["DFBENCH_LOAD_PLUGINS"] = saved_load
    if saved_env is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved_env
    sys.path[:] = saved_path
    for k in [k for k in sys.modules if k.startswith("dfbench_example")]:
        del sys.modules[k]
    sys.modules.update(saved_modules)
    importlib.invalidate_caches()


def test_the_example_registers_through_its_entry_point(example_dist):
    from dfbench.api.plugins import get_plugins, reset_plugins

    assert {(ep.group, ep.name, ep.value) for ep in example_dist.entry_points} >= {("dfbench", "example", "dfbench_example.plugin")}
    reset_plugins()
    system = get_plugins()
    info = system.info["example"]
    assert (info.distribution, info.builtin, info.error) == ("dfbench-example", False, None)
    assert info.version == _checkout_version()
    assert system.registry("methods").get("triplet-pairs").plugin == "example"
    assert system.registry("losses").get("triplet").plugin == "example"
    # a real new method and loss, not a copy of a built-in
    method = system.registry("methods").load("triplet-pairs")
    assert method.__module__ == "dfbench_example.method"
    from dfbench.train.engine import DataFreeMethod

    assert issubclass(method, DataFreeMethod) and {"smoke", "cpu", "paper"} <= set(method.profiles)
    assert method.profiles["base"]["params"]["alignment"]["loss"] == "triplet"


def test_dfbench_list_finds_the_example_method(example_dist):
    env = {**os.environ, **load_plugins_env("dfbench-example")}  # by its distribution's name
    env["PYTHONPATH"] = example_dist.pythonpath
    out = subprocess.run([sys.executable, "-m", "dfbench", "list", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(out.stdout)}
    assert rows[("methods", "triplet-pairs")]["plugin"] == "example"
    assert rows[("losses", "triplet")]["plugin"] == "example"
    table = subprocess.run([sys.executable, "-m", "dfbench", "list", "--kind", "methods"], capture_output=True, text=True, env=env, timeout=120)
    assert table.returncode == 0 and "triplet-pairs" in table.stdout
    # built-ins only: the example is not loaded
    builtins = subprocess.run(
        [sys.executable, "-m", "dfbench", "list", "--kind", "methods", "--json"], capture_output=True, text=True,
        env={**env, "DFBENCH_LOAD_PLUGINS": ""}, timeout=120,
    )
    assert "triplet-pairs" not in {r["name"] for r in json.loads(builtins.stdout)}

@pytest.mark.slow

def test_the_example_method_runs_with_the_smoke_profile(example_dist, tmp_path):
    res = CliRunner().invoke(
        cli, ["run", "--method", "triplet-pairs", "--profile", "smoke", "--quiet", "--json", "--results", str(tmp_path), *TINY],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    [record] = json.loads(res.stdout)
    assert record["status"] == "completed" and record["method"] == "triplet-pairs"
    assert record["config"]["params"]["alignment"] == {"loss": "triplet", "margin": 0.2, "mining": "hard", "symmetric": True}
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in record["metrics"].values())

@pytest.mark.slow

def test_check_plugin_passes_on_the_example(example_dist):
    res = CliRunner().invoke(cli, ["check-plugin", "example", "--json", "--quiet"], catch_exceptions=False)
    report = json.loads(res.stdout)
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert res.exit_code == 0 and not failed, failed
    assert report["passed"] and report["counts"]["skip"] == 0
    components = {c["component"] for c in report["checks"]}
    assert {"plugin example", "alignment loss triplet", "method triplet-pairs"} <= components
    contracts = {(c["component"], c["contract"]) for c in report["checks"]}
    assert ("method triplet-pairs", "same seed, same metrics") in contracts
    assert ("alignment loss triplet", "gradients reach both embeddings") in contracts

@pytest.mark.slow

def test_the_example_plugins_own_tests_pass(example_dist):
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": example_dist.pythonpath},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


# -- check-plugin on deliberately bad components --------------------------------------------------

class NaNLoss(AlignmentLoss):
    name = "nan-loss"

    def __call__(self, emb_photo, emb_sketch, labels_photo, labels_sketch):
        return (emb_photo.sum() + emb_sketch.sum()) * float("nan")


class NoGradientLoss(AlignmentLoss):
    name = "no-gradient"

    def __call__(self, emb_photo, emb_sketch, labels_photo, labels_sketch):
        return (emb_photo.detach() - emb_sketch.detach()).pow(2).mean()


_CALLS = {"n": 0}


class DriftingStrategy(InversionStrategy):
    """Images outside [-1, 1], and not reproducible: every instance draws from a new seed."""

    name = "drifting"

    def __init__(self, ctx, options, weights, variant):
        super().__init__(ctx, options, weights, variant)
        _CALLS["n"] += 1
        self.gen = torch.Generator().manual_seed(1000 + _CALLS["n"])

    def synthesize(self, students) -> SynthBatch:
        s, c = self.ctx.image_size, self.ctx.num_classes
        x = 3 * torch.randn(8, 3, s, s, generator=self.gen)
        y = torch.randint(0, c, (8,), generator=self.gen)
        g, q = self.ctx.modalities.keys
        return SynthBatch({g: x, q: x.clone()}, {g: y, q: y.clone()})


class _BadPlugin:
    @hookimpl
    def dfbench_register_losses(self, register):
        register("nan-loss", NaNLoss, description="returns NaN")
        register("no-gradient", NoGradientLoss, description="detaches its inputs")

    @hookimpl
    def dfbench_register_inversions(self, register):
        register("drifting", DriftingStrategy, description="out of range, not reproducible")


def test_check_plugin_fails_on_broken_contracts(plugin_system):
    with plugin_system.registered(_BadPlugin(), name="bad-test"):
        res = CliRunner().invoke(cli, ["check-plugin", "bad-test", "--json", "--quiet"], catch_exceptions=False)
    assert res.exit_code == 1, res.output
    status = {(c["component"], c["contract"]): c for c in json.loads(res.stdout)["checks"]}
    nan = status[("alignment loss nan-loss", "finite scalar on the run device")]
    assert nan["status"] == "fail" and "nan" in nan["detail"]
    assert status[("alignment loss no-gradient", "finite scalar on the run device")]["status"] == "pass"
    assert status[("alignment loss no-gradient", "gradients reach both embeddings")]["status"] == "fail"
    assert status[("inversion strategy drifting", "shapes and dtypes")]["status"] == "pass"
    assert status[("inversion strategy drifting", "in [-1, 1], finite, detached, on the run device")]["status"] == "fail"
    assert status[("inversion strategy drifting", "same seed, same batches")]["status"] == "fail"


def test_check_plugin_prints_a_table(plugin_system):
    with plugin_system.registered(_BadPlugin(), name="bad-test"):
        res = CliRunner().invoke(cli, ["check-plugin", "bad-test"], catch_exceptions=False)
    assert res.exit_code == 1
    assert "checking alignment loss 'nan-loss'" in res.stderr  # progress on stderr
    for word in ("component", "contract", "result", "detail", "PASS", "FAIL", "nan-loss", "drifting"):
        assert word in res.stdout, word
    assert "plugin bad-test: FAILED" in res.stdout


def test_check_plugin_unknown_name():
    res = CliRunner().invoke(cli, ["check-plugin", "exampel"])
    assert res.exit_code == 2
    assert "No plugin named 'exampel'" in res.output
