"""Plugin discovery and the component registries.

Plugins are modules named by entry points of the ``dfbench`` group. dfbench's built-in plugins are
declared in its own ``pyproject.toml`` the same way, so they go through the public path. Each entry
point is loaded in its own ``try``: a plugin that fails to import (or fails while registering) is
reported by ``dfbench plugins`` and as a warning, and everything else keeps working.

``DFBENCH_LOAD_PLUGINS=a,b`` loads the built-ins and only the named third-party entry points;
``DFBENCH_LOAD_PLUGINS=`` (set but empty) loads the built-ins only.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from dfbench import hookspecs
from dfbench.registry import KINDS, DuplicateNameError, Registry, make_register

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
        wanted = os.environ.get("DFBENCH_LOAD_PLUGINS")
        allowed = None if wanted is None else {p.strip() for p in wanted.split(",") if p.strip()}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            builtin = dist_name == BUILTIN_DISTRIBUTION
            if allowed is not None and not builtin and ep.name not in allowed:
                continue
            if ep.name in self.info:
                continue
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist_name,
                version=dist.version if dist is not None else None,
                builtin=builtin,
            )
            self.info[ep.name] = info
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # a broken plugin is reported, never fatal
                info.error = _describe(exc)

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
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name
                info = self.info.setdefault(plugin_name, PluginInfo(plugin_name, repr(impl.plugin)))
                info.hooks.append(hook_name)
                kwargs = {"register": make_register(registry, plugin_name)}
                try:
                    impl.function(**{a: kwargs[a] for a in impl.argnames if a in kwargs})
                except DuplicateNameError as exc:
                    info.error = f"while registering {kind}: {exc}"
                except Exception as exc:
                    registry.remove_plugin(plugin_name)
                    info.error = f"while registering {kind}: {_describe(exc)}"
        for impl in self.pm.hook.dfbench_register_commands.get_hookimpls():
            info = self.info.get(impl.plugin_name)
            if info is not None:
                info.hooks.append("dfbench_register_commands")

    def register_commands(self, cli) -> None:
        for impl in self.pm.hook.dfbench_register_commands.get_hookimpls():
            kwargs = {"register": cli.add_command, "cli": cli}
            try:
                impl.function(**{a: kwargs[a] for a in impl.argnames if a in kwargs})
            except Exception as exc:
                info = self.info.get(impl.plugin_name)
                if info is not None:
                    info.error = f"while registering commands: {_describe(exc)}"

    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def broken(self) -> list[PluginInfo]:
        return [i for i in self.info.values() if i.error]


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
