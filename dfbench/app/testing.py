"""Contract checks for tests: run ``dfbench check-plugin``'s checks inside pytest.

A third-party plugin runs the same contracts dfbench holds its own plugins to, in its own test
suite (as scikit-learn's ``parametrize_with_checks`` lets an estimator do)::

    from dfbench.testing import assert_contracts

    def test_my_plugin_keeps_the_contracts(tmp_path):
        assert_contracts("myplugin", cache_dir=tmp_path)

dfbench's own suite parametrizes over every built-in plugin (``tests/test_contracts.py``).
"""

from __future__ import annotations


def builtin_plugins() -> list[str]:
    """The names (as in ``dfbench plugins``) of the plugins dfbench itself ships."""
    from dfbench.api.plugins import get_plugins

    return sorted(name for name, info in get_plugins().info.items() if info.builtin)


def assert_contracts(plugin: str, *, device: str = "cpu", seed: int = 0, cache_dir=None) -> list:
    """Run every contract check of ``plugin`` (smoke profile, tiny data); raise AssertionError
    naming each failed contract with its detail. Returns the checks (all passed or skipped)."""
    from dfbench.app.conformance import FAIL, check_plugin

    results = check_plugin(plugin, device=device, seed=seed, cache_dir=cache_dir)
    failed = [c for c in results if c.status == FAIL]
    if failed:
        lines = "\n".join(f"- {c.component}: {c.contract}: {c.detail}" for c in failed)
        raise AssertionError(f"plugin {plugin}: {len(failed)} of {len(results)} contracts failed:\n{lines}")
    return results
