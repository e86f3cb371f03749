"""Benchmark suites: grids of methods x datasets x seeds, declared in YAML.

A suite file (``benchmarks/<name>.yaml``, read with ``yaml.safe_load``; ``_base_`` includes other
files) holds::

    name: qd-cifar10            # defaults to the file name
    profile: cpu
    seeds: [0, 1, 2]
    datasets: [qd-cifar10]
    methods: all                # or a list of names; "all" = every registered method
    leaderboard: dataset        # or "own": the suite changes the setting and gets leaderboards/<name>.md
    set: {eval.batch_size: 256} # overrides applied to every run (same keys as --set)
    runs:                       # optional: explicit variants instead of `methods`
      - {method: dfsbir, label: "dfsbir without one_hot", set: {params.weights.one_hot: 0}}

The grid is ordered (runs or methods, then datasets, then seeds); ``--shard i/n`` takes the items
whose position p satisfies ``p % n == i - 1``, so n machines with shards 1/n ... n/n run every
item exactly once. A suite with ``leaderboard: own`` (ablations, changed settings) gets its own
table, built from the records its grid points to (wherever they came from), and its records stay
out of the per-dataset tables. Each record carries ``suite: {name, label, seeds}`` so leaderboards know how
many seeds a cell should have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dfbench.app.config import load_yaml
from dfbench.api.errors import ConfigError, did_you_mean

SUITE_KEYS = ("name", "profile", "seeds", "datasets", "methods", "set", "runs", "results", "description", "data_root", "leaderboard",
              "controls", "cpu_kernels")

RUN_KEYS = ("method", "label", "set", "datasets", "profile")


@dataclass
class SuiteItem:
    method: str
    dataset: str
    seed: int
    profile: str
    label: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class Suite:
    name: str
    path: Path
    seeds: list[int]
    items: list[SuiteItem]
    description: str = ""
    data_root: str | None = None
    own_leaderboard: bool = False  # leaderboards/<name>.md instead of rows in the dataset tables
    controls: object = None  # dfbench.app.controls.Controls: the regime check on its page
    cpu_kernels: str = "native"  # the CPU kernels its runs hold (``dfbench bench`` applies it before torch loads)


def _flatten_set(mapping: dict | None, where: str) -> list[str]:
    if mapping is None:
        return []
    if not isinstance(mapping, dict):
        raise ConfigError(f"'set' in {where} must map config keys to values (e.g. params.rounds: 100).")
    import json

    out = []
    for k, v in mapping.items():
        if isinstance(v, dict):
            out += [f"{k}.{x}" for x in _flatten_set(v, where)]
        else:
            out.append(f"{k}={json.dumps(v) if not isinstance(v, str) else v}")
    return out


def _default_dataset() -> str:
    from dfbench.api.plugins import registry

    return registry("datasets").default_name()


def find_suite(name_or_path: str, benchmarks_dir: Path | None = None) -> Path:
    """A suite file: ``name_or_path`` itself, or a suite of that name in ``benchmarks_dir`` (by
    default ./benchmarks when it holds suites, else the ones shipped beside the dfbench package)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if benchmarks_dir is None:
        from dfbench.api.locations import suites_dir

        benchmarks_dir = suites_dir()
    base = benchmarks_dir
    for candidate in (base / name_or_path, base / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in base.glob("*.yaml")) if base.is_dir() else []
    raise ConfigError(
        f"No suite '{name_or_path}': neither a file nor {base}/{name_or_path}.yaml.{did_you_mean(name_or_path, known)} "
        f"Suites in {base}: {', '.join(known) or '(none)'}."
    )


def _names(value, key: str, path: Path) -> None:
    """``value`` must be a non-empty list of names (``datasets: shapes`` is one string, not a list)."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"'{key}' in suite {path} must be a non-empty list of names, for example [shapes], "
                          f"not {value!r}.")


def load_suite(path: Path, all_methods: list[str]) -> Suite:
    raw = load_yaml(path)
    for key in raw:
        if key not in SUITE_KEYS:
            raise ConfigError(f"Unknown key '{key}' in suite {path}.{did_you_mean(key, SUITE_KEYS)} Valid keys: {', '.join(SUITE_KEYS)}.")
    name = raw.get("name") or path.stem
    from dfbench.api.fileio import name_problem

    if name_problem(name) is not None:  # it names the suite's leaderboard page and its records' suite
        raise ConfigError(f"'name' in suite {path} cannot name a leaderboard page: {name_problem(name)}. Give the suite a "
                          "single safe name (letters, digits, '-', '_'), or leave 'name' out to use the file name.")
    profile = raw.get("profile", "cpu")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds) or not seeds:
        raise ConfigError(f"'seeds' in suite {path} must be a non-empty list of integers of at least 0 (found {seeds!r}).")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"'seeds' in suite {path} lists a seed twice ({seeds!r}): each seed is one observation.")
    datasets = raw["datasets"] if "datasets" in raw else [_default_dataset()]
    _names(datasets, "datasets", path)
    if raw.get("runs") is not None and not isinstance(raw["runs"], list):
        raise ConfigError(f"'runs' in suite {path} must be a list of runs ({{method: NAME, label: TEXT, set: {{...}}}}), "
                          f"not {type(raw['runs']).__name__}.")
    if isinstance(raw.get("methods"), list):
        _names(raw["methods"], "methods", path)
    table = raw.get("leaderboard", "dataset")
    if table not in ("dataset", "own"):
        raise ConfigError(f"'leaderboard' in suite {path} must be 'dataset' (rows in leaderboards/<dataset>.md) or 'own' (leaderboards/{name}.md), got '{table}'.")
    common = _flatten_set(raw.get("set"), str(path))
    variants = []
    if raw.get("runs"):
        for i, run in enumerate(raw["runs"]):
            if not isinstance(run, dict) or "method" not in run:
                raise ConfigError(f"Entry {i + 1} of 'runs' in suite {path} needs at least a 'method'.")
            for key in run:
                if key not in RUN_KEYS:
                    raise ConfigError(f"Unknown key '{key}' in entry {i + 1} of 'runs' in suite {path}. Valid keys: {', '.join(RUN_KEYS)}.")
            _names([run["method"]], f"method of entry {i + 1} of 'runs'", path)
            if run.get("label") is not None and not isinstance(run["label"], str):
                raise ConfigError(f"The label of entry {i + 1} of 'runs' in suite {path} must be text, not {run['label']!r}.")
            if "datasets" in run:
                _names(run["datasets"], f"datasets of entry {i + 1} of 'runs'", path)
            variants.append((run["method"], run.get("label") or run["method"], _flatten_set(run.get("set"), str(path)), run.get("datasets", datasets), run.get("profile", profile)))
    else:
        methods = raw.get("methods", "all")
        methods = sorted(all_methods) if methods == "all" else methods
        if not isinstance(methods, list):
            raise ConfigError(f"'methods' in suite {path} must be 'all' or a list of method names.")
        variants = [(m, m, [], datasets, profile) for m in methods]
    items = [
        SuiteItem(method, dataset, seed, prof, label, common + extra)
        for method, label, extra, dsets, prof in variants
        for dataset in dsets
        for seed in seeds
    ]
    from dfbench.app.controls import Controls

    controls = Controls.parse(raw.get("controls"), str(path), [label for _, label, *_ in variants])
    from dfbench.app.cpu_kernels import CHOICES  # the choices of dfbench --cpu-kernels (loads no torch)

    kernels = str(raw.get("cpu_kernels", "native")).lower()
    if kernels not in CHOICES:
        raise ConfigError(f"'cpu_kernels' in suite {path} must be one of {', '.join(CHOICES)} (the instruction set "
                          f"its CPU runs hold torch, oneDNN and MKL at), got {raw.get('cpu_kernels')!r}.")
    return Suite(name=name, path=path, seeds=list(seeds), items=items, description=raw.get("description", ""), data_root=raw.get("data_root"),
                 own_leaderboard=table == "own", controls=controls, cpu_kernels=kernels)


def all_suites(benchmarks_dir: Path, all_methods: list[str]) -> list[Suite]:
    """Every suite file in ``benchmarks_dir`` (sorted by name)."""
    return [load_suite(p, all_methods) for p in sorted(Path(benchmarks_dir).glob("*.yaml"))]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard expects i/n with 1 <= i <= n (e.g. 2/4), got '{text}'.") from None
    if not 1 <= i <= n:
        raise ConfigError(f"--shard expects i/n with 1 <= i <= n (e.g. 2/4), got '{text}'.")
    return i, n


def shard_items(items: list[SuiteItem], shard: tuple[int, int] | None) -> list[SuiteItem]:
    if shard is None:
        return list(items)
    i, n = shard
    return [item for p, item in enumerate(items) if p % n == i - 1]
