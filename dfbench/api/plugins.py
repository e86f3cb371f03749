"""Plugin discovery and the component registries.

Plugins are modules named by entry points of the ``dfbench`` group. dfbench's built-in plugins are
declared in its own ``pyproject.toml`` the same way, so they go through the public path. Each entry
point is loaded in its own ``try``: a plugin that fails to import (or fails while registering) is
reported by ``dfbench plugins`` and as a warning, and everything else keeps working.

``DFBENCH_LOAD_PLUGINS=a,b`` loads the built-ins and only the named third-party plugins (entry-point
or distribution names, :func:`selected_by_env`); ``DFBENCH_LOAD_PLUGINS=`` (set but empty) loads the
built-ins only.

Plugins are code the user chose to install, but no plugin can take the tool over: built-ins load
and register first, and a third-party entry point or component that reuses a built-in's name is
rejected and reported (the built-in keeps it); a plugin command cannot replace a built-in command;
a plugin that calls ``sys.exit`` or raises any other ``BaseException`` while importing or
registering is isolated like one that raises an ``Exception`` (docs/security.md).
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from dfbench.api import hookspecs
from dfbench.api.registry import KINDS, BadNameError, DefaultError, DuplicateNameError, Registry, make_register

ENTRY_POINT_GROUP = "dfbench"
BUILTIN_DISTRIBUTION = "dfbench"
HOOK_FOR_KIND = {kind: f"dfbench_register_{kind}" for kind in KINDS}


@dataclass
class PluginInfo:
    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": sorted(self.hooks),
            "error": self.error,
        }


class PluginSystem:
    """A pluggy manager plus one :class:`Registry` per component kind."""

    def __init__(self, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager("dfbench")
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.registries: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}
        if load_entry_points:
            self._load_entry_points()
        self.rebuild()

    # -- discovery ------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        # built-ins first: a third-party entry point can never take a built-in's name
        for ep, dist in sorted(_entry_points(), key=lambda pair: (not _is_builtin_dist(pair[1]), pair[0].name)):
            dist_name = dist.metadata["Name"] if dist is not None else None
            builtin = _is_builtin_dist(dist)
            if not builtin and not selected_by_env(ep.name, dist_name):
                continue
            if not builtin and _normalise(dist_name or "") == BUILTIN_DISTRIBUTION:  # posing as dfbench
                self._reject_impostor(ep, dist)
                continue
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist_name,
                version=dist.version if dist is not None else None,
                builtin=builtin,
            )
            if ep.name in self.info:
                if self.info[ep.name].module != ep.value or self.info[ep.name].distribution != dist_name:
                    self._reject_entry_point(info, self.info[ep.name])
                continue  # the same entry point seen twice (a path listed twice)
            self.info[ep.name] = info
            malformed = _malformed(ep)
            if malformed is not None:
                info.error = malformed
                continue
            try:
                module = ep.load()
            except KeyboardInterrupt:
                raise
            except (ImportError, AttributeError) as exc:
                info.error = (f"its entry point '{ep.name} = {ep.value}' could not be loaded ({type(exc).__name__}: {exc}). "
                              "Install what it imports, or fix the entry point in its package's metadata.")
                continue
            except BaseException as exc:  # a broken plugin (sys.exit included) is reported, never fatal
                info.error = _describe(exc)
                continue
            hookless = _hookless(ep, module)
            if hookless is not None:
                info.error = hookless
                continue
            try:
                self.pm.register(module, name=ep.name)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                info.error = _describe(exc)

    def _reject_impostor(self, ep, dist) -> None:
        """Report an entry point of a distribution named like dfbench that is not the dfbench being
        run (it is not imported, and never counts as built in)."""
        where = _dist_location(dist)
        name = f"{ep.name} ({dist.metadata['Name']} at {where})"
        self.info[name] = PluginInfo(
            name=name, module=ep.value, distribution=dist.metadata["Name"], version=dist.version, builtin=False,
            error=(f"its distribution is named '{dist.metadata['Name']}' like dfbench itself, but it is not the dfbench "
                   f"being run (that one is installed from {package_location()}); its entry point was not loaded. "
                   f"Remove {where} (a stray or posing install), or give the distribution its own name."),
        )

    def _reject_entry_point(self, info: PluginInfo, holder: PluginInfo) -> None:
        """Report an entry point whose name is taken (it is not imported)."""
        owner = "the built-in plugin" if holder.builtin else f"the plugin of {holder.distribution or holder.module}"
        info.error = (
            f"its entry point name '{info.name}' is already used by {owner} '{holder.name}' "
            f"({holder.module}); it was not loaded. Rename the entry point in its package."
        )
        info.name = f"{info.name} ({info.distribution or info.module})"  # listed beside the holder
        self.info[info.name] = info

    def register_plugin(self, obj: Any, name: str, version: str | None = None) -> None:
        """Register a plugin object directly (tests, notebooks)."""
        self.info[name] = PluginInfo(name=name, module=repr(obj), version=version)
        self.pm.register(obj, name=name)
        self.rebuild()

    def unregister_plugin(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)
        self.info.pop(name, None)
        self.rebuild()

    @contextmanager
    def registered(self, *plugins: Any, name: str):
        """Register ``plugins`` for the length of a ``with`` block (tests, notebooks), then
        unregister them, whatever the block raised. One plugin is named ``name``; several are
        named ``name-1``, ``name-2``, ...; the block gets the names."""
        names = [name] if len(plugins) == 1 else [f"{name}-{i}" for i in range(1, len(plugins) + 1)]
        try:
            for obj, each in zip(plugins, names):
                self.register_plugin(obj, name=each)
            yield names
        finally:
            for each in names:
                self.unregister_plugin(each)

    # -- registries -----------------------------------------------------------------------------
    def rebuild(self) -> None:
        """(Re)fill the registries by calling every plugin's register hooks."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = getattr(exc, "plugin", None)
            plugin_name = self.pm.get_name(name) if name is not None else None
            if plugin_name in self.info:
                self.info[plugin_name].error = f"unknown hook: {exc}"
                self.pm.unregister(name=plugin_name)
                return self.rebuild()
            raise
        self.registries = {kind: Registry(kind) for kind in KINDS}
        for info in self.info.values():
            info.hooks = []
            if info.error and info.error.startswith("while registering"):
                info.error = None
        for kind, hook_name in HOOK_FOR_KIND.items():
            hook = getattr(self.pm.hook, hook_name)
            registry = self.registries[kind]
            for impl in self._builtins_first(hook.get_hookimpls()):
                plugin_name = impl.plugin_name
                info = self.info.setdefault(plugin_name, PluginInfo(plugin_name, repr(impl.plugin)))
                info.hooks.append(hook_name)
                kwargs = {"register": make_register(registry, plugin_name, builtin=info.builtin)}
                try:
                    impl.function(**{a: kwargs[a] for a in impl.argnames if a in kwargs})
                except (DuplicateNameError, DefaultError, BadNameError) as exc:
                    info.error = f"while registering {kind}: {exc}"
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:
                    registry.remove_plugin(plugin_name)
                    info.error = f"while registering {kind}: {_describe(exc)}"
        for impl in self.pm.hook.dfbench_register_commands.get_hookimpls():
            info = self.info.get(impl.plugin_name)
            if info is not None:
                info.hooks.append("dfbench_register_commands")

    def _builtins_first(self, impls: list) -> list:
        """Hook implementations, built-in plugins' first (so built-in names are taken first)."""
        return sorted(impls, key=lambda impl: not getattr(self.info.get(impl.plugin_name), "builtin", False))

    def register_commands(self, cli) -> None:
        """Add the plugins' commands to ``cli``; none may replace a command that is already there
        (a built-in's, or an earlier plugin's): such a replacement is undone and reported."""
        for impl in self._builtins_first(self.pm.hook.dfbench_register_commands.get_hookimpls()):
            before = dict(cli.commands)
            kwargs = {"register": cli.add_command, "cli": cli}
            error = None
            try:
                impl.function(**{a: kwargs[a] for a in impl.argnames if a in kwargs})
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                error = f"while registering commands: {_describe(exc)}"
            replaced = sorted(name for name, command in before.items() if cli.commands.get(name) is not command)
            for name in replaced:
                cli.commands[name] = before[name]
            if replaced and error is None:
                error = (
                    f"while registering commands: it tried to replace the command(s) {', '.join(replaced)}, "
                    "which it may not; the original command(s) stay. Give the plugin's command another name."
                )
            info = self.info.get(impl.plugin_name)
            if info is not None and error is not None:
                info.error = error

    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def broken(self) -> list[PluginInfo]:
        return [i for i in self.info.values() if i.error]


def selected_by_env(entry_point: str, distribution: str | None) -> bool:
    """Whether ``DFBENCH_LOAD_PLUGINS`` lets a third-party entry point load (built-ins always do).

    Unset: every installed plugin. Otherwise a comma-separated list, each item an entry-point name
    (``example``) or a distribution name (``dfbench-example``; compared normalised, as pip does:
    case and runs of ``-_.`` do not matter); blanks around items are ignored; an empty value loads
    the built-ins only."""
    wanted = os.environ.get("DFBENCH_LOAD_PLUGINS")
    if wanted is None:
        return True
    items = {_normalise(item) for item in wanted.split(",") if item.strip()}
    return _normalise(entry_point) in items or (distribution is not None and _normalise(distribution) in items)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _malformed(ep) -> str | None:
    """Why an entry point's value is not ``module`` or ``module:attribute`` (None: it is)."""
    value = ep.value or ""
    match = ep.pattern.match(value) if hasattr(ep, "pattern") else None
    if match is None or not match.group("module"):
        return (f"its entry point '{ep.name} = {value}' is malformed: the value must be 'module' or 'module:attribute' "
                "(for example 'dfbench_myplugin'). Fix the [project.entry-points.dfbench] table of its package.")
    return None


def _hookless(ep, obj) -> str | None:
    """Why the object an entry point names cannot be a plugin (None: it can): it is None, or it
    defines no ``dfbench_*`` hook, so it would register nothing in silence."""
    if obj is None:
        return (f"its entry point '{ep.name} = {ep.value}' names None, not a module or object with dfbench hooks. "
                "Point it at the module that holds the plugin's @hookimpl functions.")
    hooks = [name for name in dir(obj) if name.startswith("dfbench_") and callable(getattr(obj, name, None))]
    if not hooks:
        kind = type(obj).__name__
        return (f"its entry point '{ep.name} = {ep.value}' names a {kind} that defines no dfbench hook (dfbench_register_methods, "
                "dfbench_register_datasets, ...), so it would register nothing. Point it at the module that holds the "
                "plugin's @hookimpl functions.")
    return None


def _entry_points() -> list:
    """(entry point, distribution) of the ``dfbench`` group, from every distribution on the path.
    ``importlib.metadata.entry_points`` keeps only the first distribution of each name, so a
    ``DFBench`` dist-info placed early on the path would hide dfbench's own entry points."""
    out = []
    for dist in metadata.distributions():
        try:
            eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
        except Exception:  # an unreadable entry_points.txt is no plugin
            continue
        out += [(ep, dist) for ep in eps]
    return out


def package_location() -> str:
    """Where the dfbench being run is (its package folder)."""
    import dfbench

    return str(Path(dfbench.__file__).resolve().parent)


def _dist_location(dist) -> str:
    path = getattr(dist, "_path", None)
    return str(path) if path is not None else repr(dist)


def _is_builtin_dist(dist) -> bool:
    """Whether ``dist`` is the distribution of the dfbench being run: named dfbench, and its files
    are this very package (a regular install) or it is an editable install of this checkout."""
    if dist is None or _normalise(dist.metadata["Name"] or "") != BUILTIN_DISTRIBUTION:
        return False
    package = Path(package_location())
    try:
        if Path(dist.locate_file("dfbench/__init__.py")).resolve() == package / "__init__.py":
            return True
        direct = dist.read_text("direct_url.json")
        if direct:
            from urllib.parse import unquote, urlparse

            url = json.loads(direct).get("url", "")
            if url.startswith("file:") and Path(unquote(urlparse(url).path)).resolve() == package.parent:
                return True
    except (OSError, ValueError, TypeError):
        pass
    return _entry_points_inside_checkout(dist, package.parent)


def _entry_points_inside_checkout(dist, root: Path) -> bool:
    """A source checkout run through ``PYTHONPATH`` (a second worktree of an editable install):
    the installed record names another folder, but every ``dfbench`` entry point of it is a module of
    the checkout being run, so it is the same code. Only where ``root`` is a checkout (it holds
    dfbench's ``pyproject.toml``); found without importing anything."""
    import importlib.util

    if not (root / "pyproject.toml").is_file():
        return False
    eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
    if not eps:
        return False
    for ep in eps:
        top = ep.value.split(":")[0].split(".")[0].strip()
        spec = importlib.util.find_spec(top) if top else None
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin is None or root.resolve() not in origin.parents:
            return False
    return True


def component_origin(kind: str, name: str) -> dict:
    """Which plugin, distribution and version provide the component ``name`` of ``kind``
    (written into every record: a result names the code that made it)."""
    system = get_plugins()
    entry = system.registry(kind).get(name)
    info = system.info.get(entry.plugin)
    return {
        "name": name,
        "plugin": entry.plugin,
        "distribution": info.distribution if info else None,
        "version": info.version if info else None,
        "builtin": bool(info.builtin) if info else False,
        # the module that implements it: a result names the code, not only the name it was registered under
        "module": entry.target.partition(":")[0] if isinstance(entry.target, str) else getattr(entry.target, "__module__", None),
    }


def _describe(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({tb[-1].filename}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


_SYSTEM: PluginSystem | None = None


def get_plugins() -> PluginSystem:
    """The process-wide plugin system, created on first use."""
    global _SYSTEM
    if _SYSTEM is None:
        _SYSTEM = PluginSystem()
    return _SYSTEM


def reset_plugins() -> None:
    """Forget the loaded plugins (tests; after installing a package)."""
    global _SYSTEM
    _SYSTEM = None


def registry(kind: str) -> Registry:
    return get_plugins().registry(kind)


def warn_broken(stream=None) -> None:
    stream = stream or sys.stderr
    for info in get_plugins().broken():
        print(
            f"warning: plugin '{info.name}' failed to load and is skipped: {info.error} "
            "(see 'dfbench plugins')",
            file=stream,
        )


#: the interface every component of a kind implements (terms are functions: no base)
KIND_BASES = {
    "methods": "dfbench.api.methods:Method",
    "datasets": "dfbench.api.datasets:DatasetPlugin",
    "teachers": "dfbench.api.teachers:TeacherLoader",
    "inversions": "dfbench.api.inversion:InversionStrategy",
    "losses": "dfbench.api.alignment:AlignmentLoss",
    "loggers": "dfbench.api.loggers:RunLogger",
    "metrics": "dfbench.api.metrics:RetrievalMetric",
}


def component_class(kind: str, name: str):
    """The class registered as ``name`` of ``kind``, checked to implement the kind's interface
    (:data:`KIND_BASES`): the one place a component is looked up before it is built."""
    import importlib

    from dfbench.api.errors import DfbenchError
    from dfbench.api.registry import KIND_NOUN

    reg = registry(kind)
    cls = reg.load(name)
    target = KIND_BASES.get(kind)
    if target is not None:
        module, _, attr = target.partition(":")
        base = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            plugin = reg.get(name).plugin
            raise DfbenchError(
                f"The {KIND_NOUN.get(kind, kind)} '{name}' of plugin '{plugin}' registers {cls!r}, which is not a "
                f"subclass of {module}.{attr}, the interface every {KIND_NOUN.get(kind, kind)} implements. Fix the "
                f"plugin (subclass {attr}), or unload it with DFBENCH_LOAD_PLUGINS."
            )
    return cls


def build(kind: str, name: str, *args, **kwargs):
    """``component_class(kind, name)(*args, **kwargs)``: the one build path of every component."""
    return component_class(kind, name)(*args, **kwargs)
