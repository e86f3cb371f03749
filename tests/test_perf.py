"""Execution settings (dfbench.api.perf) and keys added later: validated, kept out of the hash where they
should be (amp and non-default values enter it), and the loop runs
with each of them and gives the same result where the arithmetic is the same."""

import pytest
import torch

from dfbench.app import config as cfgmod
from dfbench.api.errors import ConfigError
from dfbench.api.perf import Perf


def _cfg(**perf):
    from dfbench.api.plugins import registry

    method = registry("methods").load("dfsbir")
    return cfgmod.resolve(method="dfsbir", dataset="shapes", profile="smoke", seed=0, device="cpu",
                          method_profiles=method.profiles, overrides={"perf": perf} if perf else {})


def test_layout_settings_stay_out_of_the_hash_and_amp_enters_it():
    base = cfgmod.config_hash(_cfg())
    assert cfgmod.config_hash(_cfg(channels_last=True, compile=True, optimizer_impl="foreach")) == base
    assert cfgmod.config_hash(_cfg(amp="bf16")) != base
    # a config at the default perf hashes exactly as one written before 'perf' existed
    legacy = _cfg()
    legacy.pop("perf")
    assert cfgmod.config_hash(legacy) == base


@pytest.mark.parametrize("bad", [{"amp": "fp8"}, {"optimizer_impl": "apex"}, {"compile": "yes"}])
def test_bad_settings_are_config_errors(bad):
    with pytest.raises(ConfigError, match="perf."):
        Perf.from_config(bad, torch.device("cpu"))


def test_amp_only_acts_on_cuda():
    assert not Perf.from_config({"amp": "bf16"}, torch.device("cpu")).amp_active
    assert Perf.from_config({"amp": "bf16"}, torch.device("cuda")).amp_active
    assert Perf.from_config({"optimizer_impl": "fused"}, torch.device("cpu")).optimizer_kwargs() == {"fused": True}


def _fit(tmp_path, **perf):
    from dfbench.app.runner import RunRequest, execute_resolved, resolve_request

    over = ["params.rounds=3", "checkpoint_every=0"] + [f"perf.{k}={str(v).lower()}" for k, v in perf.items()]
    req = RunRequest(method="dfsbir", dataset="shapes", profile="smoke", seed=0, device="cpu", overrides=over,
                     results=tmp_path / f"r{len(perf)}{sorted(perf)}")
    cfg, method = resolve_request(req)
    from dfbench.api.progress import Reporter

    out = execute_resolved(cfg, method, req, Reporter(enabled=False))
    return out.record

@pytest.mark.slow

def test_foreach_and_channels_last_runs_match_the_default(tmp_path):
    """foreach optimisers and channels-last change kernels, not the method: same metrics (to float
    rounding), and the record says what was applied."""
    ref = _fit(tmp_path)
    fast = _fit(tmp_path, optimizer_impl="foreach", channels_last=True)
    assert fast["config_hash"] == ref["config_hash"]
    assert fast["env"]["perf"] == {"amp": "off", "channels_last": True, "compile": False, "optimizer_impl": "foreach", "threads": None}
    for k, v in ref["metrics"].items():
        assert fast["metrics"][k] == pytest.approx(v, abs=0.02), k


def test_keys_added_later_hash_as_before_at_their_default():
    from dfbench.api.plugins import registry

    method = registry("methods").load("dfsbir")

    def cfg(**params):
        return cfgmod.resolve(method="dfsbir", dataset="shapes", profile="smoke", seed=0, device="cpu",
                              method_profiles=method.profiles, overrides={"params": params} if params else {})

    legacy = cfg()
    legacy["params"].pop("student_bn")
    assert cfgmod.config_hash(cfg()) == cfgmod.config_hash(legacy)
    assert cfgmod.config_hash(cfg(student_bn="frozen")) != cfgmod.config_hash(legacy)
