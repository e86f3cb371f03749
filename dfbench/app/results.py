"""``dfbench results``: list, filter and compare run records, and read their per-query outputs."""

from __future__ import annotations

from pathlib import Path

from dfbench.api.errors import DataError
from dfbench.app.records import METRIC_KEYS


def load(paths: list[Path], results: Path) -> list[dict]:
    """The records of ``paths`` (record files or folders of records), else every record under
    ``results``; each with ``_path``, sorted by dataset, method, config and seed."""
    from dfbench.app.leaderboard import load_records

    records = []
    for path in paths or [results]:
        path = Path(path)
        if path.is_file():
            found = load_records_file(path)
        elif path.is_dir():
            found = load_records(path)
        else:
            raise DataError(f"{path} does not exist. Give record files (.json) or a folder of records (--results DIR, 'results' by default).")
        records += found
    return sorted(records, key=lambda r: (r["dataset"], r["method"], r.get("config_hash") or "", r["seed"]))


def load_records_file(path: Path) -> list[dict]:
    from dfbench.app.records import ResultStore

    rec, problem = ResultStore(Path(path).parent).read(path)
    if rec is None:
        why = f": {problem}" if problem else ""
        raise DataError(f"{path} is not a usable dfbench run record (a .json file written by 'dfbench run'){why}.")
    return [rec]


def select(records: list[dict], methods=(), datasets=(), statuses=(), seeds=()) -> list[dict]:
    """Records matching every given filter (an empty filter matches all)."""
    return [
        r for r in records
        if (not methods or r["method"] in methods)
        and (not datasets or r["dataset"] in datasets)
        and (not statuses or r.get("status") in statuses)
        and (not seeds or r["seed"] in seeds)
    ]


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in (tree or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def compare_rows(records: list[dict]) -> list[tuple[str, list[str]]]:
    """(field, one value per record) for a side-by-side table: identity, metrics, teachers, timings,
    then every config key whose value differs between the records."""
    from dfbench.app.summary import teacher_accuracies

    def fmt(v):
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    rows = [(field, [fmt(r.get(field)) for r in records]) for field in ("method", "dataset", "profile", "seed", "status", "config_hash")]
    rows += [(k, [fmt((r.get("metrics") or {}).get(k)) for r in records]) for k in METRIC_KEYS]
    roles = sorted({role for r in records for role in teacher_accuracies(r)})
    rows += [(f"teacher {role}", [fmt(teacher_accuracies(r).get(role)) for r in records]) for role in roles]
    seconds = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    rows += [(f"time {k} (s)", [seconds((r.get("timing") or {}).get(k)) for r in records]) for k in ("teachers", "train", "eval", "total")]
    configs = [_flatten(r.get("config") or {}) for r in records]
    for key in sorted(set().union(*configs)):
        values = [c.get(key) for c in configs]
        if key not in ("seed", "method") and any(v != values[0] for v in values):
            rows.append((f"config {key}", [fmt(v) for v in values]))
    return rows


def per_query_path(record: dict) -> Path:
    """Where a record's per-query outputs are (beside the record, in its run folder)."""
    from dfbench.app.queries import FILE

    path = Path(record["_path"])
    return path.parent / path.stem / FILE


def per_class(rows: list[dict]) -> dict[int, tuple[int, float]]:
    """{class index: (queries, mean AP)}."""
    out: dict[int, list[float]] = {}
    for r in rows:
        out.setdefault(r["label"], []).append(r["AP"])
    return {label: (len(v), sum(v) / len(v)) for label, v in sorted(out.items())}
