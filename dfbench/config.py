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
from typing import Any, Iterable

from dfbench.errors import ConfigError, did_you_mean

PROFILES = ("smoke", "cpu", "paper")

# Keys of the resolved config that do not identify the experiment.
# The execution settings of ``perf`` (dfbench.perf) that only change layout and kernels are among
# them; ``perf.amp`` is not (it lowers precision).
UNHASHED = (
    ("seed",), ("device",), ("data", "root"), ("checkpoint_every",), ("curve_eval_every",),
    ("perf", "channels_last"), ("perf", "compile"), ("perf", "optimizer_impl"),
)

# Keys added after records existed, with the default that reproduces the earlier behaviour: at
# that default they stay out of the hash, so the records written before keep their ids; any other
# value enters the hash.
HASH_NEUTRAL_DEFAULTS = ((("params", "student_bn"), "train"), (("perf", "amp"), "off"))

# Free-form sub-trees (validated by their owners).
FREE_FORM = (("data", "options"),)

_COMMON = {
    # data.seed fixes generated data and dataset splits; it stays the same across run seeds
    "data": {"root": None, "image_size": 32, "seed": 0, "skip_bad_images": False, "options": {}},
    "teachers": {
        "loader": "trained",
        "arch": "cnn",
        "width": 32,
        "feature_dim": 128,
        "epochs": 12,
        # the modality classifier (photo vs sketch) is small and quick: the task is easy
        "modality_arch": "cnn",
        "modality_width": 8,
        "modality_epochs": 2,
        "batch_size": 64,
        "lr": 0.002,
        "weight_decay": 5e-4,
        "augment": True,
        # fraction of classes the photo and sketch teachers share (the partial-overlap experiment)
        "class_overlap": 1.0,
        # photo, sketch and unified teachers start from the same random initialisation (as if
        # fine-tuned from one pretrained network): averaging their weights then means something
        "shared_init": True,
        "checkpoints": {"photo": None, "sketch": None, "modality": None, "unified": None},
    },
    "students": {"arch": "cnn", "width": 32, "feature_dim": 128},
    "eval": {"batch_size": 256},
    # save a resumable training checkpoint every this many rounds (0: never)
    "checkpoint_every": 50,
    # test mAP@all in the training curves every this many rounds (0: never). Monitoring only: no
    # model is selected by it, and the students it reads are left exactly as they were
    "curve_eval_every": 50,
    # how the training loop executes (dfbench.perf): not part of the hash, except amp when not off
    "perf": {"amp": "off", "channels_last": False, "compile": False, "optimizer_impl": "default"},
}

CORE_PROFILES: dict[str, dict] = {
    # seconds on a laptop CPU: tiny nets, few steps; checks that everything runs
    "smoke": {
        "teachers": {"width": 16, "feature_dim": 64, "epochs": 2},
        "students": {"width": 16, "feature_dim": 64},
    },
    # minutes on a 2-core CPU: the profile of the committed leaderboards
    "cpu": {},
    # the paper's scale, for GPUs: ResNet-34 teachers and students at 224 px
    "paper": {
        "data": {"image_size": 224},
        "teachers": {"arch": "resnet34", "epochs": 30, "batch_size": 128, "lr": 0.01},
        "students": {"arch": "resnet34"},
        "eval": {"batch_size": 512},
        "perf": {"amp": "bf16", "channels_last": True, "optimizer_impl": "fused"},
    },
}


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of ``base`` with ``override`` merged in (dicts recursively, other values replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_keys(override: dict, schema: dict, path: tuple = ()) -> None:
    """Raise :class:`ConfigError` for a key of ``override`` that ``schema`` (the defaults) lacks."""
    for key, value in override.items():
        here = path + (key,)
        if key not in schema:
            known = sorted(schema)
            raise ConfigError(
                f"Unknown config key '{'.'.join(map(str, here))}'.{did_you_mean(str(key), known)} "
                f"Valid keys here: {', '.join(known) or '(none)'}. Fix the spelling in your config "
                "file or --set option; 'dfbench run --print-config ...' shows the resolved config."
            )
        if isinstance(value, dict) and isinstance(schema[key], dict) and not _is_free(here):
            check_keys(value, schema[key], here)


def _is_free(path: tuple) -> bool:
    return any(path[: len(f)] == f for f in FREE_FORM)


def load_yaml(path: str | Path, _seen: tuple = ()) -> dict:
    """Read a YAML config with ``yaml.safe_load``; resolve ``_base_`` (a path or list of paths,
    relative to the file) recursively."""
    import yaml

    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"Config file {path} includes itself through '_base_'. Remove the cycle.")
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist. Check the path given to --config.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"Config file {path} is not valid YAML{where}: {problem}. Fix the syntax (indentation, "
            "colons, quotes); only plain YAML is accepted (no custom tags)."
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of keys to values, not {type(data).__name__}.")
    bases = data.pop("_base_", None)
    if bases is None:
        return data
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else list(bases):
        merged = deep_merge(merged, load_yaml(path.parent / base, _seen + (path.resolve(),)))
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


def profile_defaults(profile: str, method_profiles: dict) -> dict:
    """Core defaults of ``profile`` merged with a method's defaults for it."""
    if profile not in PROFILES:
        raise ConfigError(
            f"Unknown profile '{profile}'.{did_you_mean(profile, PROFILES)} Profiles: {', '.join(PROFILES)}."
        )
    cfg = deep_merge(_COMMON, CORE_PROFILES[profile])
    method_part = copy.deepcopy(method_profiles.get("base", {}))
    method_part = deep_merge(method_part, method_profiles.get(profile, {}))
    params = method_part.pop("params", {})
    cfg = deep_merge(cfg, method_part)
    cfg["params"] = params
    return cfg


def resolve(
    *,
    method: str,
    dataset: str,
    profile: str,
    seed: int,
    device: str,
    method_profiles: dict,
    file_config: dict | None = None,
    overrides: dict | None = None,
) -> dict:
    """Build and validate the resolved config of one run."""
    defaults = profile_defaults(profile, method_profiles)
    cfg = copy.deepcopy(defaults)
    for layer in (file_config or {}, overrides or {}):
        layer = {k: v for k, v in layer.items() if k not in ("method", "dataset", "profile", "seed", "device")}
        check_keys(layer, defaults)
        cfg = deep_merge(cfg, layer)
    head = {"method": method, "dataset": dataset, "profile": profile, "seed": int(seed), "device": device}
    return {**head, **cfg}


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


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


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
