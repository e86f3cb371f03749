"""Registries of named components, one per kind.

Plugins register a name with a *target*: either the object itself or a lazy ``"module:attr"``
string that is imported only when the component is used, so that listing components (and
``dfbench --help``) never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from dfbench.api.errors import DfbenchError, UnknownNameError, did_you_mean

KINDS = ("methods", "datasets", "teachers", "inversions", "losses", "terms", "loggers", "metrics")

# Singular words for messages.
KIND_NOUN = {
    "methods": "method",
    "datasets": "dataset",
    "teachers": "teacher loader",
    "inversions": "inversion strategy",
    "losses": "alignment loss",
    "terms": "synthesis loss term",
    "loggers": "run logger",
    "metrics": "retrieval metric",
}


@dataclass
class Entry:
    kind: str
    name: str
    target: Any
    plugin: str
    description: str = ""
    extra: dict = field(default_factory=dict)
    default: bool = False  # the default of its kind (register(..., default=True))
    _loaded: Any = field(default=None, repr=False)

    def load(self) -> Any:
        """Import (once) and return the registered object."""
        if self._loaded is None:
            target = self.target
            if isinstance(target, str):
                module_name, _, attr = target.partition(":")
                try:
                    module = importlib.import_module(module_name)
                    obj = module
                    for part in attr.split(".") if attr else []:
                        obj = getattr(obj, part)
                except (ImportError, AttributeError) as exc:
                    raise DfbenchError(
                        f"The {KIND_NOUN.get(self.kind, self.kind)} '{self.name}' from plugin "
                        f"'{self.plugin}' points at '{target}', which could not be imported "
                        f"({type(exc).__name__}: {exc}). Reinstall or fix that plugin, or unload it "
                        f"with DFBENCH_LOAD_PLUGINS."
                    ) from exc
            else:
                obj = target
            self._declare_on(obj)  # before caching: a class that contradicts its entry fails every load
            self._loaded = obj
        return self._loaded

    def _declare_on(self, obj: Any) -> None:
        """Give a class target this entry's name and description: the register() call is the one
        declaration of both, so a class need not repeat them (and cannot contradict them)."""
        if not isinstance(obj, type) or obj.__module__ == "builtins":
            return  # a function, a module or an instance keeps what it has
        declared = obj.__dict__.get("name")
        if declared and declared != self.name and not obj.__dict__.get("_named_by_registry"):
            raise DfbenchError(
                f"The {KIND_NOUN.get(self.kind, self.kind)} '{self.name}' from plugin '{self.plugin}' is the "
                f"class {obj.__module__}.{obj.__qualname__}, which declares name = {declared!r}. The register() "
                f"call names the component: remove the class's 'name' attribute, or make it '{self.name}'."
            )
        if not declared:
            obj._named_by_registry = True  # a class registered under two names takes the last one loaded
        obj.name = self.name
        if self.description:
            obj.description = self.description

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "description": self.description,
            **({"default": True} if self.default else {}),
            **({"target": self.target} if isinstance(self.target, str) else {}),
        }


class DuplicateNameError(DfbenchError):
    pass


class BadNameError(DfbenchError):
    """A component name that is not a safe path component, or that poses as a built-in's name."""


def _look(name: str) -> str:
    """What a name looks like: case, width and separators folded (``DFSBIR``, ``df_sbir`` and
    ``ｄｆｓｂｉｒ`` all look like ``dfsbir``)."""
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKC", name).casefold() if c.isalnum())


class DefaultError(DfbenchError):
    """Two defaults of one kind, or none where a config needs one."""


class Registry:
    """Named components of one kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        # name -> every plugin that registered it, for names registered more than once
        self.conflicts: dict[str, list[str]] = {}
        self.builtin_names: set[str] = set()
        self._default: str | None = None

    def add(self, name: str, target: Any, *, plugin: str, description: str = "", builtin: bool = False,
            default: bool = False, **extra) -> Entry:
        if not isinstance(name, str) or not name:
            raise DfbenchError(
                f"Plugin '{plugin}' tried to register a {KIND_NOUN[self.kind]} without a name; "
                "pass a non-empty string as the first argument of register()."
            )
        from dfbench.api.fileio import name_problem

        problem = name_problem(name)  # names become paths (records, run folders, leaderboard pages)
        if problem is not None:
            raise BadNameError(
                f"Plugin '{plugin}' tried to register the {KIND_NOUN[self.kind]} {ascii(name)}, which is not a safe "
                f"name: {problem}; it was rejected. Register it under a single path component without separators, "
                "'..' or a leading dot (for example 'my-method')."
            )
        if not builtin and name not in self.builtin_names:
            posing = [b for b in sorted(self.builtin_names) if _look(b) == _look(name)]
            if posing:
                raise BadNameError(
                    f"Plugin '{plugin}' tried to register the {KIND_NOUN[self.kind]} '{name}', which looks like the "
                    f"built-in '{posing[0]}' of '{self._entries[posing[0]].plugin}'; it was rejected so that no result "
                    "can pass for the built-in's. Register it under a clearly different name."
                )
        if name in self.builtin_names and not builtin:  # a built-in name is never taken over
            raise DuplicateNameError(
                f"Plugin '{plugin}' tried to register the {KIND_NOUN[self.kind]} '{name}', which is a "
                f"built-in of '{self._entries[name].plugin}'; it was rejected and the built-in is used. "
                "Register it under another name."
            )
        if name in self._entries:
            other = self._entries[name]
            plugins = self.conflicts.setdefault(name, [other.plugin])
            plugins.append(plugin)
            raise DuplicateNameError(
                f"Two plugins register the {KIND_NOUN[self.kind]} '{name}': '{other.plugin}' and "
                f"'{plugin}'. Uninstall one of them, rename one registration, or limit loading with "
                f"DFBENCH_LOAD_PLUGINS."
            )
        if default and self._default is not None:
            other = self._entries[self._default]
            raise DefaultError(
                f"Two plugins declare the default {KIND_NOUN[self.kind]}: '{other.name}' of '{other.plugin}' and "
                f"'{name}' of '{plugin}'. A kind has one default: drop default=True from one register() call "
                f"(the second one was rejected), or limit loading with DFBENCH_LOAD_PLUGINS."
            )
        entry = Entry(self.kind, name, target, plugin, description or "", dict(extra), bool(default))
        self._entries[name] = entry
        if default:
            self._default = name
        if builtin:
            self.builtin_names.add(name)
        return entry

    def get(self, name: str) -> Entry:
        if not isinstance(name, str):  # a config's `method: [x]` or `dataset: {a: 1}`
            raise UnknownNameError(
                f"A {KIND_NOUN[self.kind]} is named by a string, but the config gives {type(name).__name__} {name!r}. "
                f"Write one name (for example '{(self.names() or ['NAME'])[0]}'); 'dfbench list --kind {self.kind}' lists them."
            )
        if name in self.conflicts:
            plugins = self.conflicts[name]
            raise DuplicateNameError(
                f"The {KIND_NOUN[self.kind]} '{name}' is registered by more than one plugin: "
                + " and ".join(f"'{p}'" for p in plugins)
                + ". Uninstall one of them or limit loading with DFBENCH_LOAD_PLUGINS."
            )
        try:
            return self._entries[name]
        except KeyError:
            known = sorted(self._entries)
            raise UnknownNameError(
                f"Unknown {KIND_NOUN[self.kind]} '{name}'.{did_you_mean(name, known)} "
                f"Known {self.kind}: {', '.join(known) or '(none)'}. "
                f"Run 'dfbench list --kind {self.kind}' to see them with descriptions."
            ) from None

    def load(self, name: str) -> Any:
        return self.get(name).load()

    def default_name(self) -> str:
        """The name of the component its plugin declared the default of this kind
        (``register(..., default=True)``); a clear error when none did."""
        if self._default is None:
            raise DefaultError(
                f"No {KIND_NOUN[self.kind]} is declared the default, and the config names none: name one "
                f"(see 'dfbench list --kind {self.kind}'), or register one with default=True in a plugin. "
                f"Known {self.kind}: {', '.join(self.names()) or '(none)'}."
            )
        return self._default

    def default_or_none(self) -> str | None:
        return self._default

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def remove_plugin(self, plugin: str) -> None:
        for name in [n for n, e in self._entries.items() if e.plugin == plugin]:
            del self._entries[name]
            if name == self._default:
                self._default = None
            self.builtin_names.discard(name)
        for name, plugins in list(self.conflicts.items()):
            if plugin in plugins:
                del self.conflicts[name]


def make_register(registry: Registry, plugin: str, builtin: bool = False) -> Callable[..., Entry]:
    """The ``register`` callback handed to one plugin's hook implementation."""

    def register(name: str, target: Any, description: str = "", default: bool = False, **extra) -> Entry:
        return registry.add(name, target, plugin=plugin, description=description, builtin=builtin, default=default, **extra)

    register.__doc__ = (f"Register a {KIND_NOUN[registry.kind]}: register(name, target, description=..., default=False); "
                        "default=True makes it the one a config gets when it names none (one per kind).")
    return register
