"""Every built-in plugin keeps the contracts ``dfbench check-plugin`` checks (dfbench.testing),
parametrized over the plugins, the way a third party runs them on its own."""

import pytest

from dfbench.testing import assert_contracts, builtin_plugins


def test_the_builtin_plugins_are_all_found():
    assert builtin_plugins() == ["alignment", "baselines", "datafree", "datasets", "dfsbir", "inversions", "loggers", "metrics", "teachers"]


@pytest.mark.slow
@pytest.mark.parametrize("plugin", builtin_plugins())
def test_builtin_plugin_keeps_its_contracts(plugin, tmp_path_factory):
    checks = assert_contracts(plugin, cache_dir=tmp_path_factory.getbasetemp() / "contracts-cache")
    assert any(c.status == "pass" for c in checks)  # something was checked


def test_a_failed_contract_names_itself(monkeypatch):
    from dfbench.app import conformance

    failing = [conformance.Check("losses/x", "finite loss", conformance.FAIL, "loss is nan"),
               conformance.Check("losses/x", "shape", conformance.PASS, "")]
    monkeypatch.setattr(conformance, "check_plugin", lambda *a, **k: failing)
    with pytest.raises(AssertionError, match=r"plugin p: 1 of 2 contracts failed:\n- losses/x: finite loss: loss is nan"):
        assert_contracts("p")
