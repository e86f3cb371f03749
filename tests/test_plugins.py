"""Plugin discovery, registries, duplicate names and broken plugins."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dfbench import hookimpl
from dfbench.app.cli import cli
from dfbench.api.errors import DfbenchError, UnknownNameError
from dfbench.api.registry import DuplicateNameError, Registry

BUILTIN_DATASETS = {"shapes", "folder", "qd-cifar10", "quickdraw", "sketchy", "tuberlin"}


def test_builtins_come_through_entry_points(plugin_system):
    infos = plugin_system.info
    for name in ("datasets", "teachers", "alignment", "inversions", "dfsbir"):
        assert name in infos, name
        assert infos[name].builtin and infos[name].distribution == "dfbench"
    assert BUILTIN_DATASETS <= set(plugin_system.registry("datasets").names())
    assert "dfsbir" in plugin_system.registry("methods")


def test_list_json_names_methods_and_datasets():
    result = CliRunner().invoke(cli, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {"kind", "name", "plugin", "description"} <= set(rows[0])
    names = {(r["kind"], r["name"]) for r in rows}
    assert ("methods", "dfsbir") in names
    assert {("datasets", d) for d in BUILTIN_DATASETS} <= names
    assert all(r["description"] for r in rows)


def test_unknown_name_suggests(plugin_system):
    with pytest.raises(UnknownNameError, match="Did you mean 'dfsbir'"):
        plugin_system.registry("methods").get("dfsbri")


class _Dup:
    @hookimpl
    def dfbench_register_methods(self, register):
        register("dfsbir", "nowhere:Nothing", description="a clash")


class _Extra:
    @hookimpl
    def dfbench_register_losses(self, register):
        register("my-loss", object, description="test loss")


def test_registered_test_plugin_and_unregister(plugin_system):
    with plugin_system.registered(_Extra(), name="extra-test"):
        assert "my-loss" in plugin_system.registry("losses")
    assert "my-loss" not in plugin_system.registry("losses")


def test_a_plugin_cannot_take_a_builtin_name(plugin_system):
    """The built-in keeps its name; the plugin that tried is reported (docs/security.md)."""
    with plugin_system.registered(_Dup(), name="dup-test"):
        assert plugin_system.registry("methods").get("dfsbir").plugin == "dfsbir"
        error = plugin_system.info["dup-test"].error
        assert "'dfsbir', which is a built-in of 'dfsbir'; it was rejected" in error
        # other components keep working
        assert "shapes" in plugin_system.registry("datasets")
    assert plugin_system.registry("methods").get("dfsbir").plugin == "dfsbir"


class _Twin:
    @hookimpl
    def dfbench_register_methods(self, register):
        register("twin-method", "nowhere:Nothing", description="registered by two plugins")


def test_duplicate_names_of_two_plugins_name_both(plugin_system):
    with plugin_system.registered(_Twin(), _Twin(), name="twin") as names:
        with pytest.raises(DuplicateNameError) as exc:
            plugin_system.registry("methods").get("twin-method")
        assert names == ["twin-1", "twin-2"]
        assert "twin-1" in str(exc.value) and "twin-2" in str(exc.value)
    assert "twin-1" not in plugin_system.info and "twin-method" not in plugin_system.registry("methods")


class _Broken:
    @hookimpl
    def dfbench_register_datasets(self, register):
        raise RuntimeError("boom")


def test_plugin_failing_while_registering_is_reported(plugin_system):
    with plugin_system.registered(_Broken(), name="broken-test"):
        assert "boom" in plugin_system.info["broken-test"].error
        assert "shapes" in plugin_system.registry("datasets")


def test_cli_startup_does_not_import_torch():
    code = "import sys; from dfbench.app.cli import cli; from dfbench.api.plugins import get_plugins; get_plugins(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_plugins_json():
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    by_name = {r["name"]: r for r in rows}
    assert "dfbench_register_methods" in by_name["dfsbir"]["hooks"]
    assert by_name["dfsbir"]["version"]


class _Unnamed:
    """A component class that leaves its name and description to its register() call."""


class _Named:
    name = "declared-name"


class _Base:
    pass


class _Child(_Base):
    pass


def test_register_call_names_and_describes_the_class():
    """The register() call is the one declaration: the loaded class gets its name and description."""
    registry = Registry("losses")
    entry = registry.add("given-name", _Unnamed, plugin="test", description="from register()")
    assert registry.load("given-name") is _Unnamed
    assert (_Unnamed.name, _Unnamed.description) == ("given-name", "from register()")
    assert entry.load() is _Unnamed  # loading twice changes nothing


def test_subclass_gets_its_own_name_not_its_parents():
    registry = Registry("methods")
    registry.add("parent", _Base, plugin="test", description="the parent")
    registry.add("child", _Child, plugin="test", description="the child")
    registry.load("parent")
    registry.load("child")
    assert (_Base.name, _Child.name, _Child.description) == ("parent", "child", "the child")


def test_a_class_declaring_another_name_fails_to_load():
    registry = Registry("losses")
    registry.add("registered-name", f"{__name__}:_Named", plugin="test-plugin", description="x")
    with pytest.raises(DfbenchError) as exc:
        registry.load("registered-name")
    message = str(exc.value)
    assert "'registered-name' from plugin 'test-plugin'" in message and "name = 'declared-name'" in message
    assert "remove the class's 'name' attribute" in message
    with pytest.raises(DfbenchError, match="declares name = 'declared-name'"):
        registry.load("registered-name")  # a failed load is not cached as a success
    assert _Named.name == "declared-name"  # nothing was changed


def test_a_class_declaring_its_registered_name_loads():
    registry = Registry("losses")
    registry.add("declared-name", _Named, plugin="test", description="described by register()")
    assert registry.load("declared-name").description == "described by register()"


def test_builtin_components_take_the_register_descriptions(plugin_system):
    """Every built-in class loaded through the registry carries its entry's name and description,
    which is what 'dfbench list' shows."""
    for kind in ("methods", "datasets", "teachers", "inversions", "losses"):
        for entry in plugin_system.registry(kind):
            cls = entry.load()
            assert (cls.name, cls.description) == (entry.name, entry.description), (kind, entry.name)


def test_a_plugin_declares_the_default_of_its_kind(plugin_system):
    """The core names no plugin's component: the defaults are the built-ins' register(..., default=True)."""
    assert {k: plugin_system.registry(k).default_name() for k in ("datasets", "teachers", "inversions", "losses")} == {
        "datasets": "shapes", "teachers": "trained", "inversions": "estimators", "losses": "proxy-anchor"}
    registry = Registry("losses")
    registry.add("first", _Unnamed, plugin="plugin-a", default=True)
    from dfbench.api.registry import DefaultError

    with pytest.raises(DefaultError) as exc:
        registry.add("second", _Unnamed, plugin="plugin-b", default=True)
    assert "'first' of 'plugin-a' and 'second' of 'plugin-b'" in str(exc.value)
    assert registry.default_name() == "first" and "second" not in registry
    registry.remove_plugin("plugin-a")
    with pytest.raises(DefaultError, match="No alignment loss is declared the default"):
        registry.default_name()


class _SecondDefault:
    @hookimpl
    def dfbench_register_datasets(self, register):
        register("other-default", f"{__name__}:_Unnamed", description="x", default=True)


def test_a_second_default_is_refused_and_the_plugin_reported(plugin_system):
    with plugin_system.registered(_SecondDefault(), name="second-default"):
        assert plugin_system.registry("datasets").default_name() == "shapes"
        error = plugin_system.info["second-default"].error
        assert "default dataset: 'shapes' of 'datasets' and 'other-default' of 'second-default'" in error


class _NotALogger:
    """Looks like a logger (it has the methods) but does not implement dfbench.api.loggers.RunLogger."""

    def run_started(self, event):
        pass


class _LooseComponents:
    @hookimpl
    def dfbench_register_loggers(self, register):
        register("loose-logger", _NotALogger, description="no RunLogger")


def test_every_component_is_built_through_one_path_that_checks_its_interface(plugin_system, tmp_path):
    """dfbench.api.plugins.build: the registered class must implement its kind's interface; one that
    does not is a one-paragraph error naming the component, its plugin and the interface."""
    from click.testing import CliRunner

    from conftest import error_paragraph
    from dfbench.api.errors import DfbenchError
    from dfbench.api.plugins import KIND_BASES, build, component_class
    from dfbench.app.cli import cli

    for kind in KIND_BASES:  # every built-in passes
        for name in plugin_system.registry(kind).names():
            assert component_class(kind, name) is plugin_system.registry(kind).load(name)
    with plugin_system.registered(_LooseComponents(), name="loose-test"):
        with pytest.raises(DfbenchError, match="run logger 'loose-logger' of plugin 'loose-test' registers .* not a subclass of dfbench.api.loggers.RunLogger"):
            build("loggers", "loose-logger")
        res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--profile", "smoke", "--quiet",
                                       "--logger", "loose-logger", "--results", str(tmp_path / "r")])
        assert res.exit_code == 2 and "not a subclass of dfbench.api.loggers.RunLogger" in error_paragraph(res.output)
