"""The verdict on the paper's claim, from the committed records only (docs/methods.md opens with it).

For each dataset, pairs of leaderboard rows that share teachers and readout space are compared
seed for seed and query for query (dfbench.compare): does dfsbir, with converged synthesis, beat
classifier-only? How much headroom does the supervised bound show? Does convergence matter? Where
in the range of teacher strength (benchmarks/teacher-strength.yaml) does the ordering flip, if it does?

    python benchmarks/verdict.py [--results leaderboards/records] [--dataset qd-cifar10 ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: (A, B, the question) — rows of benchmarks/<dataset>.yaml, same teachers and readout space
PAIRS = (
    ("dfsbir (proxy)", "classifier-only (probs)", "class posteriors, independent teachers: does data-free training beat the teachers' own posteriors?"),
    ("dfsbir (raw)", "classifier-only (features)", "embeddings, independent teachers: the paper's readout against the teachers' features"),
    ("dfsbir-plus (proxy)", "classifier-only (probs)", "class posteriors: dfbench's recipe"),
    ("dfsbir (proxy, unconditional estimators)", "classifier-only (probs)", "class posteriors: the release's unconditional estimators (pairs not converged)"),
    ("dfsbir (proxy)", "dfsbir (proxy, unconditional estimators)", "does converged synthesis (pairs the teachers label alike) matter?"),
    ("supervised (proxy)", "classifier-only (probs)", "headroom: the same encoders and loss on real pairs"),
    ("supervised (raw)", "classifier-only (features)", "headroom in embedding space"),
    ("dfsbir (proxy, unified teacher)", "classifier-only (probs, unified teacher)", "the unified teacher (the release's variant)"),
    ("dfsbir-plus (proxy, unified teacher)", "classifier-only (probs, unified teacher)", "dfbench's recipe with the unified teacher"),
    ("supervised (proxy, unified teacher)", "classifier-only (probs, unified teacher)", "headroom with the unified teacher"),
)

#: every other data-free row of the suites (the paper's baselines and the adapted distillation
#: methods), each against the teachers' own posteriors: same teachers, same readout space, same budget
BASELINE = "classifier-only (probs)"
OTHERS = (
    "unimodal-kd (proxy)", "gaussian-prior (proxy)", "alt-data (proxy, own schedule)", "meta-data (proxy)",
    "dafl (proxy)", "dfad (proxy)", "zskt (proxy)", "dfq (proxy)", "deepinversion (proxy)", "adi (proxy)",
    "cmi (proxy)", "fast (proxy)", "avg-weights (probs)",
)


def main(argv=None) -> None:
    from dfbench.app.compare import compare, markdown
    from dfbench.api.errors import ConfigError
    from dfbench.app.leaderboard import load_records
    from dfbench.api.locations import committed_records

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=None, help="records folder (default: the committed records)")
    ap.add_argument("--dataset", action="append", default=None)
    args = ap.parse_args(argv)
    results = args.results or committed_records()
    records = load_records(results)
    for dataset in args.dataset or sorted({r["dataset"] for r in records}):
        done, missing = [], []
        for a, b, question in PAIRS:
            try:
                done.append((compare(records, results, dataset, a, b), question))
            except ConfigError:
                missing.append(f"{a} vs {b}")
        print(f"## {dataset}\n")
        print(markdown([c for c, _ in done]))
        for c, q in done:
            print(f"\n- {c.a} vs {c.b}: {q}")
        others, waiting, apart = [], [], []
        for a in OTHERS:
            try:
                others.append(compare(records, results, dataset, a, BASELINE))
            except ConfigError as exc:
                (apart if "different teachers" in str(exc) else waiting).append(a)
        if others:
            print(f"\nEvery other data-free row against `{BASELINE}` (same teachers, readout space and budget):\n")
            print(markdown(others))
        if missing:
            print(f"\nNot yet measured (no seed with both rows completed): {'; '.join(missing)}.")
        if waiting:
            print(f"\nOther rows not yet measured: {'; '.join(waiting)}.")
        if apart:
            print(f"\nRun, but on other teachers than `{BASELINE}` on every seed (not comparable until one of them "
                  f"runs again on the other's teachers; protocol.md, \"Same teachers\"): {'; '.join(apart)}.")
        print()
    if not args.dataset:
        teacher_strength(results)
        fidelity(results)


#: benchmarks/teacher-strength.yaml: dfsbir against classifier-only with teachers of these epochs
EPOCHS = (3, 12, 40)


def suite_records(suite: str, results: Path) -> tuple[list[dict], list[str]]:
    """The completed records a suite's grid points to, each labelled with the suite's row label
    (a record another suite made, of the same config, counts: the leaderboard reads it the same way),
    and the suite's row labels in order."""
    from dfbench.app.runner import run_suite

    out, labels = [], []
    for run in run_suite(suite, dry_run=True, results=results).runs:
        labels += [run.item.label] if run.item.label not in labels else []
        record = run.record()
        if record and record.get("status") == "completed":
            out.append({**record, "suite": {**(record.get("suite") or {}), "label": run.item.label}})
    return out, labels


def teacher_strength(results: Path) -> None:
    """Does the ordering of dfsbir and classifier-only flip with the teachers' strength?"""
    from statistics import mean

    from dfbench.app.compare import compare, markdown
    from dfbench.api.errors import ConfigError, DfbenchError

    try:
        records, _ = suite_records("teacher-strength", results)
    except DfbenchError as exc:  # its configs need the data to resolve
        print(f"## teacher strength\n\nnot computed: {exc}\n")
        return
    done, missing, strength = [], [], []
    for epochs in EPOCHS:
        a, b = f"dfsbir (proxy), teachers {epochs} epochs", f"classifier-only (probs), teachers {epochs} epochs"
        try:
            done.append(compare(records, results, "qd-cifar10", a, b))
        except ConfigError:
            missing.append(f"{epochs} epochs")
        accuracy = {m: [r["teachers"][m]["accuracy"][m] for r in records if r["suite"]["label"] == b] for m in ("photo", "sketch")}
        if accuracy["photo"]:
            strength.append(f"{epochs} epochs: photo {mean(accuracy['photo']):.3f}, sketch {mean(accuracy['sketch']):.3f}")
    print("## teacher strength (qd-cifar10)\n")
    print(markdown(done))
    if strength:
        print(f"\nThe teachers' validation accuracy (mean over seeds): {'; '.join(strength)}.")
    if missing:
        print(f"\nNot yet measured: teachers of {', '.join(missing)}.")
    print()



#: seeds a fidelity row needs before validation may prefer one value
FIDELITY_SEEDS = 3


def fidelity_call(deltas: list[float]) -> str:
    """What validation says of one difference from the release, from its per-seed differences
    (release − cpu, validation mAP@all, paired by seed): a value is preferred only when it is better
    on every seed, of at least :data:`FIDELITY_SEEDS`; seeds that disagree are a tie at this scale,
    whatever the sign of their mean (with 3 seeds the mean of a split vote is seed noise)."""
    if len(deltas) < FIDELITY_SEEDS:
        return f"undecided ({len(deltas)} of {FIDELITY_SEEDS} seeds)"
    if all(d > 0 for d in deltas):
        return "the release's value"
    if all(d < 0 for d in deltas):
        return "the cpu value"
    return "no difference (seeds disagree)"


def fidelity(results: Path) -> None:
    """benchmarks/fidelity.yaml: each of dfsbir's cpu values against the release's, read on the
    validation split only (the value its selected round scored: ``selection.value``), never on test."""
    from statistics import mean

    from dfbench.api.errors import DfbenchError

    try:
        records, labels = suite_records("fidelity", results)
    except DfbenchError as exc:
        print(f"## fidelity\n\nnot computed: {exc}\n")
        return
    by_row: dict[str, dict] = {label: {} for label in labels}
    for r in records:
        by_row.setdefault(r["suite"]["label"], {})[r["seed"]] = float(r["selection"]["value"])
    base = by_row.pop("dfsbir (cpu values)", {})
    lines = ["| the release's value | seeds | val mAP@all, cpu value | val mAP@all, release's value | Δ (release − cpu) | per seed | seeds the release's value is better | on validation |",
             "|---|---|---|---|---|---|---|---|"]
    waiting = []
    for label, values in by_row.items():
        seeds = sorted(set(values) & set(base))
        if not seeds:
            waiting.append(label)
            continue
        deltas = [values[s] - base[s] for s in seeds]
        better = sum(d > 0 for d in deltas)
        verdict = fidelity_call(deltas)
        lines.append(f"| {label} | {len(seeds)} | {mean(base[s] for s in seeds):.4f} | {mean(values[s] for s in seeds):.4f} | "
                     f"{mean(deltas):+.4f} | {' '.join(f'{d:+.4f}' for d in deltas)} | {better}/{len(seeds)} | {verdict} |")
    print("## fidelity (qd-cifar10)\n")
    print("\n".join(lines) if len(lines) > 2 else "_no row measured yet_")
    if waiting:
        print(f"\nNot yet measured: {'; '.join(waiting)}.")
    print()


if __name__ == "__main__":
    main()
