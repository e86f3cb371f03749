"""Registration, the method declaration, and a smoke run through dfbench."""

import math
from importlib import metadata

import pytest

from dfbench import config as cfgmod
from dfbench.options import component_options
from dfbench.config import PROFILES
from dfbench.terms import check_weights
from dfbench_example.method import TripletPairs
from dfbench_example.triplet import CrossModalTriplet


def test_entry_point_is_declared():
    try:
        dist = metadata.distribution("dfbench-example")
    except metadata.PackageNotFoundError:
        pytest.skip("dfbench-example is not installed (pip install ./plugins/dfbench-example)")
    eps = {ep.name: ep.value for ep in dist.entry_points if ep.group == "dfbench"}
    assert eps == {"example": "dfbench_example.plugin"}


def test_registers_a_method_and_a_loss(example_plugins):
    methods, losses = example_plugins.registry("methods"), example_plugins.registry("losses")
    assert methods.get("triplet-pairs").plugin == "example"
    assert losses.get("triplet").plugin == "example"
    assert methods.load("triplet-pairs") is TripletPairs
    assert losses.load("triplet") is CrossModalTriplet
    # registering is lazy: the targets are strings
    assert isinstance(methods.get("triplet-pairs").target, str)


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_resolve(profile, example_plugins):
    cfg = cfgmod.resolve(
        method="triplet-pairs", dataset="shapes", profile=profile, seed=0, device="cpu", method_profiles=TripletPairs.profiles
    )
    p = cfg["params"]
    assert p["alignment"]["loss"] == "triplet" and p["inversion"]["strategy"] == "estimators"
    assert p["readout"] == "raw"
    assert "adversarial" not in check_weights(p["weights"])
    assert component_options(CrossModalTriplet, p["alignment"], "loss", "params.alignment").mining == "hard"
    strategy = example_plugins.registry("inversions").load(p["inversion"]["strategy"])
    assert component_options(strategy, p["inversion"], "strategy", "params.inversion").z_dim >= 1
    assert TripletPairs().teacher_roles(p) == {"unified", "modality"}


@pytest.mark.slow
def test_smoke_run(tmp_path, example_plugins):
    from dfbench.progress import Reporter
    from dfbench.runner import RunRequest, execute

    req = RunRequest(
        method="triplet-pairs", profile="smoke", device="cpu", results=tmp_path,
        overrides=["data.options.train_per_class=24", "data.options.test_per_class=12"],
    )
    record = execute(req, Reporter(enabled=False)).record
    assert record["status"] == "completed"
    assert record["config"]["params"]["alignment"]["loss"] == "triplet"
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in record["metrics"].values())
