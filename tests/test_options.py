"""Typed component options (dfbench.api.options) and the config schema assembled from them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from dfbench.app import config as cfgmod
from dfbench.api.errors import ConfigError, DfbenchError
from dfbench.api.options import Options, component_options, option, options_class, section, to_data, validate
from dfbench.api.plugins import get_plugins, registry
from dfbench.api.registry import KINDS
from dfbench.app.runner import RunRequest, resolve_request

REPO = Path(__file__).resolve().parents[1]


def _resolve(method="dfsbir", profile="smoke", overrides=(), config_file=None, **kw):
    return resolve_request(RunRequest(method=method, profile=profile, overrides=list(overrides), config_file=config_file, **kw))[0]


def _components():
    get_plugins()
    return [(kind, entry.name) for kind in KINDS for entry in registry(kind)]


@pytest.mark.parametrize(("kind", "name"), _components())
def test_every_component_declares_documented_options(kind, name):
    """Each option of every registered component (datasets' ``data.options`` included) has a type,
    a default that passes its own checks and one line of help."""
    cls = registry(kind).load(name)
    schema = cfgmod.method_schema(cls, getattr(cls, "profiles", {})) if kind == "methods" else options_class(cls)
    rows = schema.describe()
    if kind != "methods" or getattr(cls, "Options", None) is not None:
        assert all(row["help"] for row in rows), [row["name"] for row in rows if not row["help"]]
    # the defaults are valid values of the schema (nothing declared that its own check refuses)
    validate(schema, schema.defaults(), kind, registry)


def test_option_of_a_component_can_be_set():
    """An option that a strategy declares (and no profile spells out) is accepted and reaches the
    strategy typed."""
    cfg = _resolve(overrides=["params.inversion.bn_first_layer_scale=0.5"])
    assert cfg["params"]["inversion"]["bn_first_layer_scale"] == 0.5
    strategy = registry("inversions").load("estimators")
    opts = component_options(strategy, cfg["params"]["inversion"], "strategy", "params.inversion")
    assert opts.bn_first_layer_scale == 0.5 and opts.z_dim == 64  # smoke's z_dim, the rest at defaults
    assert opts.optimizer.betas == [0.5, 0.999] and isinstance(opts.optimizer.lr, float)


BAD_VALUES = [
    ("params.optimizer.lr=abc", "params.optimizer.lr"),
    ("params.rounds=abc", "must be an integer"),
    ("params.rounds=-1", "must be >= 0"),
    ("params.batch_size=0", "params.batch_size"),
    ("students.width=0", "students.width"),
    ("eval.batch_size=0", "eval.batch_size"),
    ("params.fresh_fraction=5", "must be <= 1.0"),
    ("params.fresh_fraction=0", "must be > 0.0"),
    ("params.readout=bogus", "must be one of 'raw', 'proxy'"),
    ("params.student_bn=frozn", "Did you mean 'frozen'"),
    ("params.weights.one_hot=-1", "params.weights.one_hot"),
    ("params.weights.bogus=1", "Unknown name 'bogus' in params.weights"),
    ("params.inversion.z_dimm=3", "Did you mean 'z_dim'"),
    ("params.inversion.strategy=nope", "Unknown inversion strategy 'nope'"),
    ("params.alignment.margin=abc", "params.alignment.margin"),
    ("params.init_from_teachers=3", "must be true or false"),
    ("teachers=null", "teachers"),
    ("teachers.epochs=0", "teachers.epochs"),
    ("teachers.class_overlap=1.5", "teachers.class_overlap"),
    ("teachers.arch=resnet99", "teachers.arch"),
    ("data.image_size=2", "data.image_size"),
    ("perf.amp=fp8", "perf.amp"),
    ("params=5", "params"),
    ("checkpoint_every=-5", "checkpoint_every"),
    ("seed=3", "--seed"),
    ("device=cuda", "--device"),
    ("method=dafl", "--method"),
    ("params.optimizer.lr=nan", "finite"),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES)
def test_bad_values_fail_when_the_config_is_resolved(override, message):
    with pytest.raises(DfbenchError) as err:  # ConfigError, or UnknownNameError for a name
        _resolve(overrides=[override])
    assert message in str(err.value)


def test_bad_value_is_a_clean_cli_error(tmp_path):
    from click.testing import CliRunner

    from dfbench.app.cli import cli

    res = CliRunner().invoke(cli, ["run", "-m", "dfsbir", "--profile", "smoke", "--results", str(tmp_path / "r"),
                                   "--set", "params.batch_size=0"])
    assert res.exit_code == 2, res.output
    assert "params.batch_size" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()  # nothing written: it failed before any work


def test_switching_a_component_drops_the_old_components_options():
    """The method's profile sets estimator options; switching the strategy starts that section
    from the new strategy, so none of them is left behind to fail later."""
    cfg = _resolve(overrides=["params.inversion.strategy=pixels", "params.inversion.steps=3"])
    inv = cfg["params"]["inversion"]
    assert inv == {"strategy": "pixels", "steps": 3}
    with pytest.raises(ConfigError, match="params.inversion.z_dim"):
        _resolve(overrides=["params.inversion.strategy=pixels", "params.inversion.z_dim=3"])
    loss = _resolve(overrides=["params.alignment.loss=infonce"])["params"]["alignment"]
    assert loss == {"loss": "infonce"}


def test_a_config_file_switch_then_set_option(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("params:\n  inversion: {strategy: generators, z_dim: 16}\n")
    cfg = _resolve(config_file=str(path), overrides=["params.inversion.width=4"])
    assert cfg["params"]["inversion"] == {"strategy": "generators", "z_dim": 16, "width": 4}


def test_top_level_keys_of_a_config_file(tmp_path):
    """A file's method, dataset, seed and device are read (never silently ignored); one that
    contradicts the command line is an error."""
    path = tmp_path / "c.yaml"
    path.write_text("method: classifier-only\nseed: 3\nprofile: smoke\n")
    cfg, method = resolve_request(RunRequest(method=None, config_file=str(path)))
    assert (cfg["method"], cfg["seed"], cfg["profile"]) == ("classifier-only", 3, "smoke")
    assert type(method).__name__ == "ClassifierOnly"
    with pytest.raises(ConfigError, match="seed"):
        resolve_request(RunRequest(method=None, seed=1, config_file=str(path)))


def test_a_third_party_components_options_are_checked():
    """A plugin's component declares its options like a built-in: they are checked, shown and
    delivered typed."""
    from dfbench import hookimpl
    from dfbench.api.alignment import AlignmentLoss

    @dataclass
    class MarginOptions(Options):
        margin: float = option(0.2, min=0.0, help="the margin")
        mining: Literal["hard", "all"] = option("hard", help="which triplets")

    class MarginLoss(AlignmentLoss):
        Options = MarginOptions

    class ThirdParty:
        @hookimpl
        def dfbench_register_losses(self, register):
            register("margin-test", MarginLoss, description="a third party's loss")

    system = get_plugins()
    with system.registered(ThirdParty(), name="third-party-test"):
        with pytest.raises(ConfigError, match="must be one of 'hard', 'all'"):
            _resolve(overrides=["params.alignment.loss=margin-test", "params.alignment.mining=some"])
        cfg = _resolve(overrides=["params.alignment.loss=margin-test", "params.alignment.margin=0.3"])
        assert cfg["params"]["alignment"] == {"loss": "margin-test", "margin": 0.3}
        opts = component_options(MarginLoss, cfg["params"]["alignment"], "loss", "params.alignment")
        assert (opts.margin, opts.mining) == (0.3, "hard")
        assert [row["name"] for row in cfgmod.component_options_rows(registry("losses").get("margin-test"))] == ["margin", "mining"]


def test_checking_keeps_the_config_as_written():
    """A whole number for a float option and a number YAML 1.1 reads as a string stay as written
    (so the config hash does not move); the typed options hold floats."""
    cfg = _resolve(overrides=["params.optimizer.lr=1e-5", "params.weights.bn=2"])
    assert cfg["params"]["optimizer"]["lr"] == "1e-5" and cfg["params"]["weights"]["bn"] == 2
    opts = cfgmod.method_schema(registry("methods").load("dfsbir"), {}).from_data(cfg["params"], "params", registry)
    assert opts.optimizer.lr == 1e-5 and opts.weights["bn"] == 2.0 and isinstance(opts.weights["bn"], float)


def _committed_records():
    out = {}
    for path in sorted((REPO / "leaderboards" / "records").glob("*/*/*.json")):
        record = json.loads(path.read_text())
        out.setdefault(record["method"], record)  # one record per method
    return list(out.values())


@pytest.mark.parametrize("record", _committed_records(), ids=lambda r: r["method"])
def test_committed_configs_resolve_to_themselves(record):
    """Feeding a committed record's config back through the resolver gives the same config and
    the same hash: the typed schema accepts every config the leaderboards were made from."""
    cfg = record["config"]
    again = cfgmod.resolve(
        method=cfg["method"], dataset=cfg["dataset"], profile=cfg["profile"], seed=cfg["seed"], device=cfg["device"],
        method_profiles=registry("methods").load(cfg["method"]).profiles,
        file_config={k: v for k, v in cfg.items() if k not in cfgmod.HEAD_KEYS},
    )
    assert cfgmod.config_hash(again) == record["config_hash"]


@dataclass
class _Inner(Options):
    a: int = option(1, min=0, help="a")


@dataclass
class _Outer(Options):
    x: float | None = option(None, help="x")
    inner: _Inner = section(_Inner, help="inner", a=5)
    opt: float | None = option(None, optional=True, help="left out when unset")


def test_options_read_like_mappings_and_plain_data():
    o = _Outer.from_data({"inner": {"a": 2}})
    assert o["inner"]["a"] == 2 and o.inner.a == 2 and dict(o)["x"] is None
    assert to_data(_Outer()) == {"x": None, "inner": {"a": 5}}  # the unset optional is left out
    assert _Outer.from_data({}).inner.a == 5  # the section's own default
    with pytest.raises(ConfigError, match=r"inner\.a"):
        _Outer.from_data({"inner": {"a": -1}}, "sec")
