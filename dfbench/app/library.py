"""The library API: what ``import dfbench`` offers a notebook or a script, and what the command line
calls (``dfbench run`` is :func:`run`, ``dfbench bench`` is :func:`run_suite`).

``dfbench.run``, ``dfbench.run_suite`` and ``dfbench.load_results`` are these functions, imported
when first used, so ``import dfbench`` stays light (no torch, numpy or pandas).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from dfbench.api.errors import ConfigError
from dfbench.api.progress import Reporter


def request(method: str | None = None, dataset: str | None = None, *, profile: str | None = None,
            seed: int | None = None, config=None, set=None, results="results", device: str | None = None,
            data_root=None, cache_dir=None, force: bool = False, limit: int | None = None,
            skip_bad_images: bool = False):
    """A :class:`dfbench.app.runner.RunRequest` from keyword arguments.

    ``config`` is a YAML file (a path) or the same content as a dict; ``set`` is a list of
    ``"key=value"`` strings (``--set``) or a dict ``{"params.rounds": 100}`` (values as Python
    values). Everything else is the option of ``dfbench run`` of that name."""
    from dfbench.app.runner import RunRequest

    config_file, config_dict = None, None
    if isinstance(config, Mapping):
        config_dict = dict(config)
    elif config is not None:
        config_file = str(config)
    return RunRequest(
        method=method, dataset=dataset, profile=profile, seed=seed, device=device,
        data_root=str(data_root) if data_root else None, config_file=config_file, config=config_dict,
        overrides=overrides(set), results=Path(results), cache_dir=Path(cache_dir) if cache_dir else None,
        force=force, skip_bad_images=skip_bad_images, limit=limit,
    )


def overrides(items) -> list[str]:
    """``--set`` items from a list of ``"key=value"`` strings or a dict of key -> Python value."""
    if items is None:
        return []
    if isinstance(items, Mapping):
        # JSON is YAML: each value reads back as the same scalar, list or mapping (dfbench.app.config.parse_set)
        return [f"{key}={json.dumps(value)}" for key, value in items.items()]
    if isinstance(items, str) or not isinstance(items, Iterable):
        raise ConfigError(f"set= takes a list of 'key=value' strings or a dict of key: value, got {items!r}.")
    return [str(item) for item in items]


def resolved_config(**kwargs) -> dict:
    """The resolved config of a run (what ``dfbench run --print-config`` shows), running nothing;
    the keyword arguments of :func:`request`."""
    from dfbench.app.runner import resolve_request

    return resolve_request(request(**kwargs))[0]


def run(method: str | None = None, dataset: str | None = None, *, profile: str | None = None,
        seed: int | None = None, config=None, set=None, results="results", device: str | None = None,
        data_root=None, cache_dir=None, force: bool = False, limit: int | None = None,
        skip_bad_images: bool = False, progress: bool = False, reporter: Reporter | None = None):
    """Run ``method`` on ``dataset`` with one seed and write its record; the call behind
    ``dfbench run``. Returns a :class:`dfbench.app.runner.RunOutcome`: ``.record`` (the record
    as a dict: status, metrics, config, ...), ``.path`` (the record's file), ``.skipped`` (a
    valid completed record existed: nothing ran; ``force=True`` runs again), ``.metrics``.

    Bad input raises :class:`dfbench.api.errors.DfbenchError` (a one-paragraph message) before any
    work; ``progress=True`` shows the progress bars the command line shows."""
    from dfbench.app import runner
    from dfbench.app.records import pin_code_state

    pin_code_state()  # before any plugin module is imported: records name the code the process started with
    req = request(method, dataset, profile=profile, seed=seed, config=config, set=set, results=results, device=device,
                  data_root=data_root, cache_dir=cache_dir, force=force, limit=limit, skip_bad_images=skip_bad_images)
    return runner.run(req, reporter or Reporter(enabled=progress))


def run_suite(suite, *, seeds=None, methods=None, shard=None, force: bool = False, dry_run: bool = False,
              results="results", data_root=None, device: str = "auto", cache_dir=None, progress: bool = False,
              reporter: Reporter | None = None, loggers=()):
    """Run a suite (its name, e.g. ``"smoke"``, a suite file, or a :class:`dfbench.app.suites.Suite`):
    every selected item without a valid completed record; the call behind ``dfbench bench``.
    Returns a :class:`dfbench.app.runner.SuiteResult` (``.runs``: each item's status and record
    path; ``completed()``, ``failed()``, ``count(status)``, ``todo()``)."""
    from dfbench.app import runner

    return runner.run_suite(
        suite, shard=shard, seeds=seeds, methods=methods, force=force, dry_run=dry_run, results=Path(results),
        data_root=data_root, device=device, cache_dir=Path(cache_dir) if cache_dir else None,
        reporter=reporter or Reporter(enabled=progress and not dry_run), loggers=list(loggers),
    )


#: the record fields that become columns as they are (then metrics, timing and config, flattened)
IDENTITY = ("method", "dataset", "seed", "config_hash", "profile", "status", "run_id")


def load_results(path=None):
    """A ``pandas.DataFrame`` with one row per valid run record under ``path`` (default: the committed
    records, ``leaderboards/records``; each file left out is named in a
    :class:`dfbench.app.records.BadRecordWarning`).

    Columns: ``method``, ``dataset``, ``seed``, ``config_hash``, ``profile``, ``status``, ``run_id``;
    ``label`` (the leaderboard row: the suite's label, else the method) and ``suite``; one column per
    metric (``mAP@all``, ``mAP@200``, ``P@100``, ``P@200``, and any other the record holds);
    ``timing.<phase>``; the resolved config flattened to dotted columns (``config.params.rounds``,
    ``config.teachers.loader``; a list stays one value); ``path``, the record's file."""
    import pandas as pd

    from dfbench.api.errors import DfbenchError
    from dfbench.api.locations import committed_records
    from dfbench.app.records import ResultStore

    if path is None:
        path = committed_records()
        if path is None:
            raise DfbenchError("No path given and no committed records (leaderboards/records) here: pass the folder "
                               "'dfbench run' or 'dfbench bench' wrote its records to.")
    path = Path(path)
    if not path.is_dir():
        raise DfbenchError(f"Results folder {path} does not exist. Pass the folder 'dfbench run' or 'dfbench bench' wrote its records to.")
    rows = [_row(record) for record in ResultStore(path).records()]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=[*IDENTITY, "label", "suite", "path"])
    return frame.sort_values(["dataset", "label", "seed", "path"], kind="stable").reset_index(drop=True)


def _row(record: dict) -> dict:
    suite = record.get("suite") or {}
    row = {key: record.get(key) for key in IDENTITY}
    row["label"] = suite.get("label") or record["method"]
    row["suite"] = suite.get("name")
    row.update(record.get("metrics") or {})
    row.update({f"timing.{k}": v for k, v in (record.get("timing") or {}).items() if not isinstance(v, dict)})
    row.update(_flatten(record.get("config") or {}, "config."))
    row["path"] = record.get("_path")
    return row


def _flatten(tree: Mapping, prefix: str) -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
