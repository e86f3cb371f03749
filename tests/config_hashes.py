"""Config hashes of every method x profile on shapes and of every suite row in benchmarks/*.yaml.

    python tests/config_hashes.py OUT.json     # write them
    python tests/config_hashes.py --compare A.json B.json

A refactoring that must not move a config hash is checked by writing the file before and after it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def collect() -> dict:
    from dfbench.app import config as cfgmod
    from dfbench.app import suites
    from dfbench.api.plugins import registry
    from dfbench.app.runner import RunRequest, resolve_request

    out = {}
    for method in registry("methods").names():
        for profile in ("smoke", "cpu", "paper"):
            cfg, _ = resolve_request(RunRequest(method=method, dataset="shapes", profile=profile))
            out[f"{method}/{profile}"] = [cfgmod.config_hash(cfg), cfgmod.canonical_json(cfg)]
    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    for spec in suites.all_suites(bench, registry("methods").names()):
        for item in spec.items:
            req = RunRequest(method=item.method, dataset=item.dataset, profile=item.profile, seed=item.seed, overrides=item.overrides)
            cfg, _ = resolve_request(req)
            out[f"{spec.name}/{item.label}/{item.dataset}/{item.seed}"] = [cfgmod.config_hash(cfg), cfgmod.canonical_json(cfg)]
    return out


def compare(a: dict, b: dict) -> list[str]:
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        a, b = (json.loads(Path(p).read_text()) for p in sys.argv[2:4])
        diff = compare(a, b)
        print(f"{len(a)} vs {len(b)} configs; {len(diff)} differ" + "".join(f"\n  {k}" for k in diff))
        sys.exit(1 if diff else 0)
    Path(sys.argv[1]).write_text(json.dumps(collect(), indent=1, sort_keys=True))
