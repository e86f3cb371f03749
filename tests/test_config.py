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
