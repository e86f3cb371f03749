"""What a suite costs: wall time per row from its records, and what the runs still to do will cost.

The protocol suites run every record at one torch thread (``perf.threads: 1``), so a run's wall
time bounds the CPU time it used from above (more when several runs shared the cores, as the
committed ones did: two or three runs on two cores). Records made since 2026-12-06 also carry the
CPU time the run's process used (``timing.cpu``); the CPU column sums it (naming how many of the
row's runs carry it when not all do), and a line compares it with the same runs' wall time. The
issue's target for the qd-cifar10 suite is about 8 CPU-hours for every method and three seeds: the
last line also sums one row per method (the method's first row in the suite, the one its other
rows vary).

    python benchmarks/suite_cost.py qd-cifar10 [--results leaderboards/records]

Wall time depends on what else shared the cores: a second estimate takes every run of a row at
that row's fastest run.

Prints one markdown row per suite row: seeds done, mean wall seconds per run (train phase and the
whole run), the row's hours so far, and an estimate for its missing seeds (the row's own mean, else its
method's in the suite, else, for a row on the data-free budget, the mean over the budget rows; a row
with none of these gets no estimate). A row estimated from runs on another budget (``params.budget``:
a 4x row from its 1x row, say) has their training phase scaled by the ratio of the budgets, the
rest of the run (teachers, evaluation) kept as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from statistics import mean


def main(argv=None) -> None:
    from dfbench.api.locations import committed_records
    from dfbench.app.runner import run_suite

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", help="a suite's name or file (as 'dfbench bench' takes it)")
    ap.add_argument("--results", type=Path, default=None, help="records folder (default: the committed records)")
    args = ap.parse_args(argv)
    result = run_suite(args.suite, dry_run=True, results=args.results or committed_records())

    rows: dict[str, dict] = {}
    for run in result.runs:
        budget = _budget(run.item.overrides)
        row = rows.setdefault(run.item.label, {"method": run.item.method, "total": [], "train": [], "cpu": [], "todo": 0,
                                               "budget": budget is not None, "passes": budget, "runs": []})
        record = run.record() or {}
        if record.get("status") == "completed":
            timing = record.get("timing") or {}
            row["total"].append(float(timing.get("total", 0.0)))
            row["train"].append(float(timing.get("train", 0.0)))
            row["cpu"].append(timing.get("cpu"))
            row["runs"].append((row["total"][-1], row["train"][-1], budget))
        else:
            row["todo"] += 1

    spent = [r for row in rows.values() if row["budget"] for r in row["runs"]]
    by_method: dict[str, list] = {}
    for row in rows.values():
        by_method.setdefault(row["method"], []).extend(row["runs"])
    print(f"| {result.suite.name} row | seeds done | train s/run | total s/run | hours so far | hours to do | CPU hours so far |")
    print("|---|---|---|---|---|---|---|")
    done_h = todo_h = 0.0
    unknown = 0
    first_of_method: dict[str, float] = {}  # method -> its first row's hours, done and to do
    fastest_h, fastest_first = 0.0, {}
    for label, row in rows.items():
        # the row's own mean, else its method's; the data-free rows' mean stands in only for a row that
        # spends the same budget (a row without one, such as avg-weights, may train nothing at all)
        same = row["runs"] or by_method[row["method"]] or (spent if row["budget"] else [])
        per_run = mean(_scaled(r, row["passes"]) for r in same) if same else None
        hours = sum(row["total"]) / 3600
        todo = None if per_run is None else row["todo"] * per_run / 3600
        done_h += hours
        if todo is None:
            unknown += row["todo"]
        else:
            todo_h += todo
        cells = (
            f"{len(row['total'])}/{len(row['total']) + row['todo']}",
            f"{mean(row['train']):.0f}" if row["train"] else "-",
            f"{mean(row['total']):.0f}" if row["total"] else "-",
            f"{hours:.2f}",
            "-" if not row["todo"] else ("?" if todo is None else f"~{todo:.2f}"),
            _cpu_cell(row["cpu"]),
        )
        first_of_method.setdefault(row["method"], hours + (todo or 0.0))
        if row["total"]:  # every seed at the row's fastest run: the cost with less contention
            n = len(row["total"]) + row["todo"]
            fastest_h += n * min(row["total"]) / 3600
            fastest_first.setdefault(row["method"], n * min(row["total"]) / 3600)
        print(f"| {label} | " + " | ".join(cells) + " |")
    both = [(c, w) for row in rows.values() for c, w in zip(row["cpu"], row["total"]) if c is not None]
    if both:
        cpu_s, wall_s = sum(c for c, _ in both), sum(w for _, w in both)
        print(f"\nCPU time where records carry it ({len(both)} runs): {cpu_s / 3600:.2f} h against "
              f"{wall_s / 3600:.2f} h of their wall time (CPU / wall = {cpu_s / wall_s:.2f}).")
    if fastest_h:
        print(f"\nEvery run at its row's fastest run (runs that shared the cores with fewer others): about "
              f"{fastest_h:.1f} h; one row per method ({len(fastest_first)} methods with a record): about "
              f"{sum(fastest_first.values()):.1f} h.")
    print(f"\n{result.suite.name}: {done_h:.2f} h of wall time in {sum(len(r['total']) for r in rows.values())} "
          f"completed runs; about {todo_h:.2f} h for the {sum(r['todo'] for r in rows.values())} still to do"
          + (f" ({unknown} of them with no estimate)" if unknown else "")
          + f"; about {done_h + todo_h:.1f} h in all, at one thread per run (an upper bound on CPU-hours)."
          + f" One row per method ({len(first_of_method)} methods): about {sum(first_of_method.values()):.1f} h.")


def _budget(overrides) -> int | None:
    """The run's data-free budget (teacher image passes) where the suite sets one."""
    for item in overrides or ():
        key, _, value = str(item).partition("=")
        if key.strip() == "params.budget":
            try:
                return int(float(value))
            except ValueError:
                return None
    return None


def _scaled(run: tuple, passes: int | None) -> float:
    """A run's wall seconds as a run on ``passes`` would spend them: the training phase scales with
    the budget, the rest (teachers, evaluation) does not."""
    total, train, budget = run
    if passes and budget and passes != budget:
        return total - train + train * passes / budget
    return total


def _cpu_cell(cpu: list) -> str:
    """The row's CPU hours from the records that carry ``timing.cpu``; "(k/n runs)" when only some do."""
    known = [c for c in cpu if c is not None]
    if not known:
        return "-"
    hours = f"{sum(known) / 3600:.2f}"
    return hours if len(known) == len(cpu) else f"{hours} ({len(known)}/{len(cpu)} runs)"


if __name__ == "__main__":
    main()
