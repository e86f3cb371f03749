"""Config resolution: profiles, YAML with _base_, --set, unknown keys, hashing."""

import pytest

from dfbench.app import config as c
from dfbench.api.errors import ConfigError

METHOD = {"base": {"params": {"rounds": 10, "weights": {"a": 1.0}}}, "cpu": {"params": {"rounds": 20}}, "smoke": {"teachers": {"epochs": 1}}}


def resolve(**kw):
    args = dict(method="m", dataset="shapes", profile="cpu", seed=0, device="cpu", method_profiles=METHOD)
    args.update(kw)
    return c.resolve(**args)


def test_profile_layers():
    assert resolve()["params"]["rounds"] == 20
    smoke = resolve(profile="smoke")
    assert smoke["params"]["rounds"] == 10 and smoke["teachers"]["epochs"] == 1
    assert resolve(profile="paper")["teachers"]["arch"] == "resnet34"


def test_set_overrides_and_types():
    cfg = resolve(overrides=c.parse_set(["params.weights.a=0", "teachers.augment=false", "data.options.train_per_class=5"]))
    assert cfg["params"]["weights"]["a"] == 0
    assert cfg["teachers"]["augment"] is False
    assert cfg["data"]["options"] == {"train_per_class": 5}


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="params.round'.*Did you mean 'rounds'"):
        resolve(overrides=c.parse_set(["params.round=3"]))
    with pytest.raises(ConfigError, match="Unknown config key 'nonsense'"):
        resolve(file_config={"nonsense": 1})


def test_bad_set_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        c.parse_set(["rounds"])


def test_unknown_profile():
    with pytest.raises(ConfigError, match="Did you mean 'smoke'"):
        resolve(profile="smok")


def test_yaml_base_and_invalid_yaml(tmp_path):
    (tmp_path / "base.yaml").write_text("params:\n  rounds: 7\nteachers:\n  epochs: 3\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\nparams:\n  rounds: 8\n")
    loaded = c.load_yaml(tmp_path / "child.yaml")
    assert loaded == {"params": {"rounds": 8}, "teachers": {"epochs": 3}}
    cfg = resolve(file_config=loaded)
    assert cfg["params"]["rounds"] == 8 and cfg["teachers"]["epochs"] == 3
    (tmp_path / "bad.yaml").write_text("params:\n  rounds: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        c.load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "tag.yaml").write_text("x: !!python/object:os.system 'echo hi'\n")
    with pytest.raises(ConfigError):
        c.load_yaml(tmp_path / "tag.yaml")
    (tmp_path / "loop.yaml").write_text("_base_: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        c.load_yaml(tmp_path / "loop.yaml")


def test_hash_ignores_seed_device_and_root_only():
    a = resolve(seed=0)
    b = resolve(seed=1, device="cuda", overrides={"data": {"root": "/elsewhere"}})
    assert c.config_hash(a) == c.config_hash(b)
    assert c.run_id(a) != c.run_id(b)
    d = resolve(overrides=c.parse_set(["params.rounds=21"]))
    assert c.config_hash(a) != c.config_hash(d)


# -- issue 30, item 8: a key written twice, a bad _base_, a config nested without end ---------------

@pytest.mark.parametrize("text, fragment", [
    ("params:\n  rounds: 3\n  rounds: 4\n", "the key 'rounds' is written twice in one mapping (first at line 2)"),
    ("params:\n  rounds: 3\nparams:\n  batch_size: 4\n", "the key 'params' is written twice"),
    ("_base_: 5\n", "'_base_' in config file"),
    ("[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
])
def test_a_config_file_that_yaml_would_misread_is_an_error(tmp_path, text, fragment):
    from dfbench.api.errors import ConfigError
    from dfbench.app.config import load_yaml

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_merge_key_may_override_what_it_brings_in(tmp_path):
    from dfbench.app.config import load_yaml

    path = tmp_path / "c.yaml"
    path.write_text("a: &base {x: 1, y: 2}\nb: {<<: *base, y: 3}\n")
    assert load_yaml(path)["b"] == {"x": 1, "y": 3}


def test_a_missing_base_is_blamed_on_the_file_that_includes_it(tmp_path):
    from dfbench.api.errors import ConfigError
    from dfbench.app.config import load_yaml

    (tmp_path / "top.yaml").write_text("_base_: middle.yaml\n")
    (tmp_path / "middle.yaml").write_text("_base_: [absent.yaml]\n")
    with pytest.raises(ConfigError, match=r"absent.yaml, the '_base_' of .*middle.yaml, does not exist"):
        load_yaml(tmp_path / "top.yaml")


@pytest.mark.parametrize("body, fragment", [
    ("datasets: shapes\nmethods: [dfsbir]\n", "'datasets' in suite"),
    ("datasets: [shapes]\nseeds: [true]\nmethods: [dfsbir]\n", "'seeds' in suite"),
    ("datasets: [shapes]\nseeds: [0, 0]\nmethods: [dfsbir]\n", "lists a seed twice"),
    ("datasets: [shapes]\nmethods: [dfsbir, 5]\n", "'methods' in suite"),
    ("datasets: [shapes]\nruns: 5\n", "'runs' in suite"),
])
def test_a_malformed_suite_is_an_error_before_any_row(tmp_path, body, fragment):
    from click.testing import CliRunner

    from dfbench.app.cli import cli

    path = tmp_path / "s.yaml"
    path.write_text("profile: smoke\n" + body)
    res = CliRunner().invoke(cli, ["bench", "--suite", str(path), "--dry-run", "--results", str(tmp_path / "r")])
    assert res.exit_code == 2 and fragment in res.output and "Traceback" not in res.output, res.output


def test_a_dry_run_validates_every_row(tmp_path):
    from click.testing import CliRunner

    from dfbench.app.cli import cli

    path = tmp_path / "s.yaml"
    path.write_text("profile: smoke\nseeds: [0]\ndatasets: [shapes]\nruns:\n  - {method: dfsbir, set: {params.rounds: -3}}\n"
                    "  - {method: classifier-only}\n")
    res = CliRunner().invoke(cli, ["bench", "--suite", str(path), "--dry-run", "--results", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert "invalid\tdfsbir / shapes / seed 0\tConfig value params.rounds" in res.output
    assert "1 to do, 1 invalid." in res.output and "Error: 1 of the 2 runs of suite s are invalid" in res.output
    assert not (tmp_path / "r").exists()
