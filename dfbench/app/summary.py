"""The summary printed at the end of ``dfbench run``: what the number means.

A newcomer reads the teachers' accuracies (on validation under the protocol), the time of each phase, the chance level of
mAP@all, the committed leaderboard's figure for the same method, dataset, profile and config,
where the record and pictures are, and what to run next. It stays on screen (stdout) after the
progress bars are gone.
"""

from __future__ import annotations

from pathlib import Path

PHASES = (("data", "data"), ("teachers", "teachers"), ("train", "training"), ("eval", "evaluation"), ("total", "total"))

MAP_MEANING = (
    "mAP@all: each test {query} ranks every test {gallery} by similarity; the precision at each {gallery} of its "
    "class, averaged, is its AP; the mean over {queries} is mAP@all: 1.0 puts every same-class {gallery} first"
)


def map_meaning(record: dict) -> str:
    """:data:`MAP_MEANING` in the words of the record's modalities (its dataset's declaration)."""
    from dfbench.api.modalities import DEFAULT_PAIR

    mods = (record.get("data") or {}).get("modalities")
    mods = mods if isinstance(mods, dict) else DEFAULT_PAIR.declaration()
    by_role = {str((m or {}).get("role")): (m or {}) for m in mods.values() if isinstance(m, dict)}
    query = by_role.get("query", DEFAULT_PAIR.query.declaration())
    gallery = by_role.get("gallery", DEFAULT_PAIR.gallery.declaration())
    return MAP_MEANING.format(query=query.get("name", "query"), queries=query.get("plural", f"{query.get('name', 'query')}s"),
                              gallery=gallery.get("name", "gallery item"))

NEXT_STEPS = (
    ("dfbench run --method dfsbir", "the paper's method: converged paired synthesis, then the encoders (about 15 minutes)"),
    ("dfbench list --kind methods", "every method you can run"),
    ("dfbench results", "your records, filtered and side by side"),
)


def chance_level(record: dict) -> float | None:
    """mAP@all of a random ranking: the share of the gallery in the query's class, 1/classes when
    the classes are balanced (as in every built-in dataset)."""
    classes = (record.get("data") or {}).get("classes") or []
    return 1.0 / len(classes) if classes else None


def teacher_accuracies(record: dict) -> dict[str, float]:
    """{role: overall accuracy} of the run's teachers (on the selection split: validation, else test)."""
    out = {}
    for role, info in sorted((record.get("teachers") or {}).items()):
        acc = (info or {}).get("accuracy")
        value = acc.get("all") if isinstance(acc, dict) else acc
        if isinstance(value, (int, float)):
            out[role] = float(value)
    return out


def reference(record: dict, records_dir: Path | None) -> dict | None:
    """The committed records of the same dataset, method, profile and config hash:
    {n, mean, std, seeds} of their mAP@all (None: no such record, or no committed records)."""
    if records_dir is None:
        return None
    import statistics

    from dfbench.app.leaderboard import load_records

    folder = Path(records_dir) / record["dataset"] / record["method"]
    if not folder.is_dir():
        return None
    values, threads = {}, {}
    for r in load_records(folder):
        if r.get("status") == "completed" and r.get("config_hash") == record.get("config_hash") and r.get("profile") == record.get("profile"):
            values.setdefault(r["seed"], float(r["metrics"]["mAP@all"]))
            threads.setdefault(r["seed"], (r.get("env") or {}).get("torch_threads"))
    if not values:
        return None
    vals = list(values.values())
    return {"n": len(vals), "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None,
            "seeds": sorted(values), "by_seed": values, "threads": threads}


def same_seed(record: dict, ref: dict | None) -> str | None:
    """Whether the run reproduces the committed record of its own seed, and if not, the likely
    reason: CPU runs are bit-reproducible at the same torch thread count, not across counts."""
    seed = record.get("seed")
    if ref is None or seed not in ref.get("by_seed", {}):
        return None
    committed, value = ref["by_seed"][seed], float(record["metrics"]["mAP@all"])
    if value == committed:
        return f"  reproduces the committed seed-{seed} record bit for bit"
    ran, here = ref["threads"].get(seed), (record.get("env") or {}).get("torch_threads")
    if ran is not None and here is not None and ran != here:
        return (
            f"  differs from the committed seed-{seed} record ({committed:.4f}): that ran on {ran} torch "
            f"thread(s), this run on {here}; CPU runs reproduce bit for bit at the same thread count "
            f"(run with OMP_NUM_THREADS={ran} to check)"
        )
    return f"  differs from the committed seed-{seed} record ({committed:.4f}) at the same thread count: report it"


def verdict(value: float, chance: float | None, ref: dict | None) -> str:
    """One sentence saying what mAP@all ``value`` means against chance and the committed figure."""
    parts = []
    if chance:
        ratio = value / chance
        if ratio < 1.5:
            parts.append(f"{value:.4f} is near chance ({chance:.4f}): the embeddings hardly separate the classes")
        else:
            parts.append(f"{value:.4f} is {ratio:.1f}x chance ({chance:.4f})")
    if ref is not None:
        spread = f" ± {ref['std']:.4f}" if ref["std"] is not None else ""
        tol = max(3 * (ref["std"] or 0.0), 0.01)
        agrees = "in line with" if abs(value - ref["mean"]) <= tol else "away from"
        parts.append(f"{agrees} the committed leaderboard's {ref['mean']:.4f}{spread} (n={ref['n']}) for this exact config")
    return "; ".join(parts) + "."


def lines(record: dict, path: Path, results: Path | None = None, records_dir: Path | None = None) -> list[str]:
    """The summary of one run record, as plain lines."""
    out = []
    chance = chance_level(record)
    accs = teacher_accuracies(record)
    if accs:
        shown = ", ".join(f"{role} {acc:.3f}" for role, acc in accs.items())
        split = "validation" if any(k.startswith("val/") for k in ((record.get("data") or {}).get("counts") or {})) else "test"
        out.append(f"teachers ({split} accuracy): {shown}" + (f"; chance {chance:.3f}" if chance else ""))
        if chance and min(accs.values()) < 2 * chance:
            out.append(
                "  a teacher is near chance: what the students learn from it cannot be good (the smoke "
                "profile only checks that everything runs; use the cpu profile for numbers)"
            )
    else:
        out.append("teachers: none (this method uses no teachers)")
    timing = record.get("timing") or {}
    out.append("time: " + " · ".join(f"{label} {timing[key]:.1f}s" for key, label in PHASES if key in timing))
    metrics = record.get("metrics") or {}
    if record.get("status") == "completed" and "mAP@all" in metrics:
        ref = reference(record, records_dir)
        out.append(f"mAP@all {verdict(metrics['mAP@all'], chance, ref)}")
        if (line := same_seed(record, ref)) is not None:
            out.append(line)
        out.append(f"  ({map_meaning(record)})")
        if ref is None:
            where = records_dir if records_dir is not None else "leaderboards/records (not found)"
            out.append(
                f"  no committed record in {where} for {record['method']} on {record['dataset']} with profile "
                f"{record.get('profile')} and config {record.get('config_hash')}: nothing to compare with"
            )
    elif record.get("status") == "failed":
        out.append(f"failed: {record.get('error')}")
    out.append(f"record: {path}")
    pictures = record.get("pictures") or []
    if pictures:
        art = Path(path).parent / Path(path).stem
        out.append(f"pictures: {', '.join(str(art / p) for p in pictures)}")
    return out


def next_steps(ran: set[str]) -> list[str]:
    """What to run next (skipping the method just run)."""
    out = ["next:"]
    for command, why in NEXT_STEPS:
        if command.removeprefix("dfbench run --method ") not in ran:
            out.append(f"  {command:<36} {why}")
    return out
