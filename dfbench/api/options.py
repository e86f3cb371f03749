"""Typed, documented options: how every configurable part of dfbench declares what it accepts.

A component (method, teacher loader, inversion strategy, alignment loss) declares its options once,
next to its code, as a dataclass that subclasses :class:`Options`; each field is an
:func:`option` with its default, its range or choices and one line of help; the field's annotation
is its type::

    @dataclass
    class EstimatorOptions(Options):
        z_dim: int = option(256, min=1, help="noise dimension of both estimators")
        optimizer: OptimizerOptions = section(OptimizerOptions, help="the estimators' optimiser")

The config resolver (:mod:`dfbench.app.config`) assembles the schema of a run from the components it
names and checks every value against it before any work: unknown keys, wrong types and values out
of range are one-paragraph :class:`ConfigError`s that name the key. A config section that names a
component (``{strategy: estimators, z_dim: 64}``) is declared with :func:`component`: its options
are those of the component it names, so a third party's component brings its own options.

The resolved config stays plain JSON-able data (records and hashes are made from it); a component
receives its options as an instance of its dataclass, which also reads like a mapping
(``opts.z_dim`` and ``opts["z_dim"]`` alike) so code written against dicts keeps working.

The ideas come from mmengine's config/registry (``build_from_cfg``: a section names what it builds)
and lm-evaluation-harness's ``TaskConfig`` (typed config behind declarative YAML); the code is ours.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dfbench.api.errors import ConfigError, did_you_mean

_META = "dfbench"


@dataclass(frozen=True)
class Spec:
    """What :func:`option` records about one field besides its type and default."""

    help: str = ""
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple | None = None
    #: for :func:`component` fields: the registry kind and the key that names the component
    kind: str | None = None
    key: str | None = None
    #: for :func:`component` fields: whether the resolved config holds every option of the
    #: component (``True``) or only those a layer set (defaults then apply when it is built)
    fill: bool = False
    #: for ``dict[str, float]`` fields whose keys must be names registered in a kind
    keys_of: str | None = None
    #: an option that may be left unset (``None``): then absent from the plain data, and the code
    #: that reads it applies its own fallback (an optimiser's betas, for instance)
    optional: bool = False


def option(default: Any, *, help: str, min: float | None = None, max: float | None = None,  # noqa: A002
           min_exclusive: bool = False, max_exclusive: bool = False, choices: tuple | None = None,
           optional: bool = False) -> Any:
    """A typed option with a default, an optional range or set of choices, and one line of help.
    ``optional``: the option may stay unset (``None``, left out of the config's plain data)."""
    spec = Spec(help=help, min=min, max=max, min_exclusive=min_exclusive, max_exclusive=max_exclusive,
                choices=tuple(choices) if choices is not None else None, optional=optional)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: _copy(d), metadata={_META: spec})
    return field(default=default, metadata={_META: spec})


def section(options_cls: type, *, help: str, **defaults) -> Any:
    """A nested group of options (an :class:`Options` subclass), with its own defaults overridden."""
    return field(default_factory=lambda: options_cls(**defaults), metadata={_META: Spec(help=help)})


#: the backbone architectures of teachers and students (``dfbench.train.models``)
Arch = Literal["cnn", "resnet18", "resnet34", "mobilenet_v2"]


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of ``base`` with ``override`` merged in (dicts recursively, other values replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def registered_default(kind: str, required: bool = True) -> str | None:
    """The name of the component a plugin declared the default of ``kind``
    (``register(..., default=True)``), read from the registry when it is asked for. ``required``:
    none is an error naming the kind, else None."""
    from dfbench.api.plugins import registry

    return registry(kind).default_name() if required else registry(kind).default_or_none()


def component(kind: str, key: str, default: str | None = None, *, help: str, fill: bool = False) -> Any:
    """A config section naming a registered component of ``kind`` under ``key``; its other keys are
    that component's own options (its ``Options`` class). With ``fill`` the resolved config holds
    all of them (the component's defaults, then its ``profiles`` entry for the run's profile).
    Without ``default`` the section defaults to the component its plugin declared the default of
    ``kind`` (the core names no plugin's component)."""
    return field(
        default_factory=lambda: {key: default if default is not None else registered_default(kind, required=False)},
        metadata={_META: Spec(help=help, kind=kind, key=key, fill=fill)},
    )


def default_name_of(kind: str, *, help: str) -> Any:
    """A string option naming a registered component of ``kind``, by default the one its plugin
    declared the default of the kind."""
    return field(default_factory=lambda: registered_default(kind, required=False) or "", metadata={_META: Spec(help=help)})


def weights_of(kind: str, *, help: str, default: dict | None = None) -> Any:
    """A ``{name: weight}`` mapping whose names are registered components of ``kind``, each >= 0."""
    value = dict(default or {})
    return field(default_factory=lambda: dict(value), metadata={_META: Spec(help=help, min=0.0, keys_of=kind)})


def _copy(value):
    import copy

    return copy.deepcopy(value)


@dataclass
class Options(Mapping):
    """Base of every options dataclass. Instances read like a read-only mapping of their fields."""

    # -- mapping view (so code written against the plain dicts of earlier versions keeps working)
    def __getitem__(self, key: str):
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple:
        return tuple(f.name for f in dataclasses.fields(cls))

    # -- declaration
    @classmethod
    def defaults(cls) -> dict:
        """The defaults as plain data (what a config section holds when nothing is set)."""
        return to_data(cls())

    @classmethod
    def describe(cls) -> list[dict]:
        """One row per option: name, type, default, help, and range or choices when declared."""
        rows = []
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            spec = f.metadata.get(_META, Spec())
            row = {"name": f.name, "type": _type_name(hints[f.name], spec), "default": to_data(_default_of(f)), "help": spec.help}
            if spec.choices is None and typing.get_origin(_strip_none(hints[f.name])[0]) is Literal:
                row["choices"] = list(typing.get_args(_strip_none(hints[f.name])[0]))
            elif spec.choices is not None:
                row["choices"] = list(spec.choices)
            rng = _range_text(spec)
            if rng:
                row["range"] = rng
            rows.append(row)
        return rows

    @classmethod
    def from_data(cls, data: Mapping | None, where: str = "", registry=None) -> "Options":
        """Check ``data`` (a config section, possibly partial) and build the typed options: unknown
        keys, wrong types and out-of-range values raise :class:`ConfigError` naming ``where.key``."""
        return build(cls, validate(cls, data, where, registry))


def to_data(value):
    """Plain JSON-able data of options (nested dataclasses become dicts, tuples lists)."""
    if isinstance(value, Options):
        return {
            f.name: to_data(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (getattr(value, f.name) is None and f.metadata.get(_META, Spec()).optional)
        }
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_data(v) for v in value]
    return value


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    raise TypeError(f"option '{f.name}' has no default")


_HINTS: dict = {}


def _hints(cls) -> dict:
    if cls not in _HINTS:
        import sys

        module = sys.modules.get(cls.__module__)
        _HINTS[cls] = typing.get_type_hints(cls, globalns=vars(module) if module else None)
    return _HINTS[cls]


def _strip_none(tp) -> tuple[Any, bool]:
    """(the type without ``None``, whether ``None`` is allowed)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        nullable = len(args) != len(typing.get_args(tp))
        return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), nullable
    return tp, False


def _type_name(tp, spec: Spec) -> str:
    if spec.kind:
        from dfbench.api.registry import KIND_NOUN

        return f"{KIND_NOUN.get(spec.kind, spec.kind)} section"
    if spec.keys_of:
        return f"mapping of {spec.keys_of} names to weights"
    base, nullable = _strip_none(tp)
    origin = typing.get_origin(base)
    if origin is Literal:
        name = "one of " + ", ".join(map(str, typing.get_args(base)))
    elif isinstance(base, type) and issubclass(base, Options):
        name = "section"
    elif origin in (list, tuple):
        args = typing.get_args(base)
        name = f"list of {getattr(args[0], '__name__', str(args[0]))}" if args else "list"
    elif origin is dict:
        name = "mapping"
    else:
        name = getattr(base, "__name__", str(base))
    return name + (" or null" if nullable else "")


def _range_text(spec: Spec) -> str:
    if spec.min is None and spec.max is None:
        return ""
    lo = "" if spec.min is None else f"{spec.min} {'<' if spec.min_exclusive else '<='} "
    hi = "" if spec.max is None else f" {'<' if spec.max_exclusive else '<='} {spec.max}"
    return f"{lo}value{hi}"


# ---- checking ---------------------------------------------------------------------------------
#
# Checking keeps the config as it was written: only the keys a layer set are stored (defaults are
# filled in when a component builds its typed options), and a float option given as a whole number,
# or as a string that spells a number (YAML 1.1 reads ``1e-4`` as a string), stays as written, so
# checking never changes a config's hash; the typed options hold the float.


def _bad(where: str, message: str, spec: Spec | None = None) -> ConfigError:
    hint = f" ({spec.help})" if spec is not None and spec.help else ""
    return ConfigError(
        f"Config value {where}{hint}: {message}. Fix it in your config file or --set option; "
        "'dfbench run --print-config ...' shows every option with its type and help."
    )


def _describe_value(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def validate(cls: type, data: Mapping | None, where: str, registry=None, unlisted: tuple = ()) -> dict:
    """``data`` (a possibly partial section of ``cls``) checked: unknown keys, wrong types and values
    out of range raise :class:`ConfigError` naming ``where.key``. Returns the checked keys only.
    ``unlisted``: valid keys that an unknown key's message does not offer (set another way)."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise _bad(where or "(top level)", f"must be a section of keys (a mapping), got {_describe_value(data)}")
    specs = fields_of(cls)
    out = {}
    for key, value in data.items():
        if key not in specs:
            known = sorted(k for k in specs if k not in unlisted)
            raise ConfigError(
                f"Unknown config key '{_join(where, key)}'.{did_you_mean(str(key), known)} "
                f"Valid keys here: {', '.join(known) or '(none)'}. Fix the spelling in your config "
                "file or --set option; 'dfbench run --print-config ...' shows the resolved config."
            )
        tp, spec, default = specs[key]
        out[key] = _check(tp, spec, value, _join(where, key), registry, default)
    return out


def _join(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


def _check(tp, spec: Spec, value, where: str, registry, default):
    if spec.kind:
        return check_component(spec, value, where, registry, default)
    if spec.keys_of:
        return _check_weights(spec, value, where, registry)
    base, nullable = _strip_none(tp)
    if value is None:
        if nullable:
            return None
        raise _bad(where, "must not be null", spec)
    if isinstance(base, type) and issubclass(base, Options):
        return validate(base, value, where, registry)
    origin = typing.get_origin(base)
    if origin is Literal:
        choices = typing.get_args(base)
        if isinstance(value, bool) or value not in choices:
            raise _bad(where, f"must be one of {', '.join(map(repr, choices))}, got {_describe_value(value)}"
                       f"{did_you_mean(str(value), [str(c) for c in choices])}", spec)
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _bad(where, f"must be a list, got {_describe_value(value)}", spec)
        args = typing.get_args(base)
        item = args[0] if args else Any
        return [_scalar(item, spec, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _bad(where, f"must be a mapping, got {_describe_value(value)}", spec)
        return dict(value)
    return _scalar(base, spec, value, where)


def _scalar(tp, spec: Spec, value, where: str):
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(where, f"must be true or false, got {_describe_value(value)}", spec)
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(where, f"must be an integer, got {_describe_value(value)}", spec)
    elif tp is float:
        number = _float_text(value, where, spec) if isinstance(value, bool) or not isinstance(value, (int, float)) else value
        if not math.isfinite(number):
            raise _bad(where, f"must be a finite number, got {number}", spec)
        _check_range(spec, number, where)
        return value  # as written (a string that spells a number too): checking never changes a hash
    elif tp is str:
        if not isinstance(value, str):
            raise _bad(where, f"must be a string, got {_describe_value(value)}", spec)
    if spec.choices is not None and value not in spec.choices:
        raise _bad(where, f"must be one of {', '.join(map(repr, spec.choices))}, got {value!r}"
                   f"{did_you_mean(str(value), [str(c) for c in spec.choices])}", spec)
    _check_range(spec, value, where)
    return value


def _float_text(value, where: str, spec: Spec) -> float:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string: accept a string that is a plain number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise _bad(where, f"must be a number, got {_describe_value(value)}", spec)


def _check_range(spec: Spec, value, where: str) -> None:
    if spec.min is not None and (value < spec.min or (spec.min_exclusive and value == spec.min)):
        raise _bad(where, f"must be {'>' if spec.min_exclusive else '>='} {spec.min}, got {value}", spec)
    if spec.max is not None and (value > spec.max or (spec.max_exclusive and value == spec.max)):
        raise _bad(where, f"must be {'<' if spec.max_exclusive else '<='} {spec.max}, got {value}", spec)


def _check_weights(spec: Spec, value, where: str, registry) -> dict:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise _bad(where, f"must be a mapping of names to weights, got {_describe_value(value)}", spec)
    known = registry(spec.keys_of).names() if registry is not None else None
    if known is not None:
        for name in value:
            if name not in known:
                raise ConfigError(
                    f"Unknown name '{name}' in {where}.{did_you_mean(str(name), known)} Known "
                    f"{spec.keys_of}: {', '.join(known)}."
                )
    return {k: _scalar(float, spec, v, f"{where}.{k}") for k, v in value.items()}


def options_class(component_cls) -> type:
    """The :class:`Options` subclass a component declares (``Options`` attribute), else the empty one."""
    cls = getattr(component_cls, "Options", None)
    return cls if isinstance(cls, type) and issubclass(cls, Options) else Options


def selected(spec: Spec, value, default=None) -> str | None:
    """The component name a section selects (its own ``key``, else the default's)."""
    if isinstance(value, Mapping) and spec.key in value:
        return value[spec.key]
    return default.get(spec.key) if isinstance(default, Mapping) else None


def _noun(kind: str) -> str:
    from dfbench.api.registry import KIND_NOUN

    return KIND_NOUN.get(kind, kind)


def check_component(spec: Spec, value, where: str, registry, default=None) -> dict:
    """A section naming a component (``{key: name, **its options}``): the name must be registered
    and the other keys must be that component's options."""
    if not isinstance(value, Mapping):
        raise _bad(where, f"must be a section naming a {_noun(spec.kind)} under '{spec.key}', got {_describe_value(value)}", spec)
    name = selected(spec, value, default)
    if name is None and spec.key not in value and registry is not None:
        registry(spec.kind).default_name()  # no default declared for the kind: say so
    if not isinstance(name, str) or not name:
        raise _bad(_join(where, spec.key), f"must name a registered {_noun(spec.kind)}, got {_describe_value(name)}", spec)
    if registry is None:
        return dict(value)
    opts_cls = options_class(registry(spec.kind).load(name))
    rest = {k: v for k, v in value.items() if k != spec.key}
    out = validate(opts_cls, rest, where, registry)
    return {spec.key: value[spec.key], **out} if spec.key in value else out


# ---- building typed options -------------------------------------------------------------------


def build(cls: type, data: Mapping | None = None) -> "Options":
    """Typed options of ``cls`` from checked data: missing keys take their defaults, numbers become
    the declared type, nested sections their own ``Options``."""
    data = data or {}
    values = {}
    for name, (tp, spec, default) in fields_of(cls).items():
        if name not in data:
            continue
        values[name] = _typed(tp, spec, data[name], default)
    return cls(**values)


def _typed(tp, spec: Spec, value, default):
    if spec.kind or spec.keys_of:
        if spec.keys_of:
            return {k: float(v) for k, v in value.items()}
        merged = dict(default) if isinstance(default, Mapping) and selected(spec, value, default) == selected(spec, default) else {}
        return {**merged, **value}
    base, _ = _strip_none(tp)
    if value is None:
        return None
    if isinstance(base, type) and issubclass(base, Options):
        merged = {**to_data(default), **value} if isinstance(default, Options) else value
        return build(base, merged)
    if base is float:
        return float(value)  # a string that spells a number was checked to be one
    if typing.get_origin(base) in (list, tuple):
        args = typing.get_args(base)
        return [float(v) if args and args[0] is float else v for v in value]
    return value


def fields_of(cls: type) -> dict:
    """``{name: (type, Spec, default)}`` of an options class."""
    hints = _hints(cls)
    return {f.name: (hints[f.name], f.metadata.get(_META, Spec()), _default_of(f)) for f in dataclasses.fields(cls)}


class DefaultsOf:
    """``Component.defaults``: the plain defaults of the component's ``Options`` (derived, so a
    component declares each default once)."""

    def __get__(self, obj, owner) -> dict:
        return options_class(owner).defaults()


def component_options(component_cls, section: Mapping, key: str, where: str) -> Options:
    """The typed options of a component from its config section (``key`` names the component)."""
    rest = {k: v for k, v in (section or {}).items() if k != key}
    return options_class(component_cls).from_data(rest, where)
