"""Registration, the method declaration, and a smoke run through dfbench."""

import math
from importlib import metadata

import pytest

from dfbench.app import config as cfgmod
from dfbench.api.options import component_options
from dfbench.app.config import PROFILES
from dfbench.train.terms import check_weights
from dfbench_dfsbir.method import DFSBIR
from dfbench_example.method import TripletPairs, on_top_of
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


def test_on_top_of_merges_removes_and_switches_components():
    base = {"base": {"params": {"rounds": 5, "weights": {"a": 1.0, "b": 2.0}, "alignment": {"loss": "x", "alpha": 3.0},
                                "inversion": {"strategy": "s", "z_dim": 8, "width": 4}}}, "smoke": {"params": {"rounds": 1}}}
    out = on_top_of(base, {"base": {"weights": {"b": None}, "alignment": {"loss": "y", "margin": 0.2}, "inversion": {"strategy": "s", "z_dim": 16}},
                           "cpu": {"rounds": 9}})
    p = out["base"]["params"]
    assert p["weights"] == {"a": 1.0}  # None removed the key, the rest merged
    assert p["alignment"] == {"loss": "y", "margin": 0.2}  # another loss: its options replace the old ones
    assert p["inversion"] == {"strategy": "s", "z_dim": 16, "width": 4}  # the same strategy: merged
    assert out["smoke"] == {"params": {"rounds": 1}} and out["cpu"] == {"params": {"rounds": 9}}
    assert base["base"]["params"]["weights"] == {"a": 1.0, "b": 2.0}  # the source is not changed


def test_profiles_differ_from_dfsbir_only_where_declared():
    """The example keeps dfsbir's schedule: every profile but the declared changes is dfsbir's."""
    declared = {"readout", "weights", "alignment"}  # CHANGES: the readout, no adversarial term, no Proxy-Anchor option
    for profile in ("smoke", "cpu", "paper"):
        ours, theirs = TripletPairs.profiles[profile]["params"], DFSBIR.profiles[profile]["params"]
        assert {k: v for k, v in ours.items() if k not in declared} == {k: v for k, v in theirs.items() if k not in declared}
        assert "adversarial" not in ours.get("weights", {}) and "alignment" not in ours
    ours, theirs = TripletPairs.profiles["base"]["params"], DFSBIR.profiles["base"]["params"]
    assert set(theirs) - set(ours) == set() and ours["weights"] == {k: v for k, v in theirs["weights"].items() if k != "adversarial"}


@pytest.mark.slow
def test_smoke_run(tmp_path, example_plugins):
    from dfbench.api.progress import Reporter
    from dfbench.app.runner import RunRequest, execute

    req = RunRequest(
        method="triplet-pairs", profile="smoke", device="cpu", results=tmp_path,
        overrides=["data.options.train_per_class=24", "data.options.test_per_class=12"],
    )
    record = execute(req, Reporter(enabled=False)).record
    assert record["status"] == "completed"
    assert record["config"]["params"]["alignment"]["loss"] == "triplet"
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in record["metrics"].values())
