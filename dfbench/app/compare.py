"""Paired comparison of two leaderboard rows: is row A's mAP@all above row B's, by how much, and how
sure can a reader be?

Two rows of one suite share, seed for seed, the teachers, the data and the test queries (the
teachers of seed s are trained once and cached for every method of seed s). A seed on which the
two rows ran on different teachers (their records' weight digests differ: a teacher trained again
on another kind of CPU is another teacher) is left out of the pairing and named. A comparison pairs
them twice:

- **per seed**: the mAP@all difference of each seed (A minus B), their mean, and how many seeds
  favour A. With n seeds, a sign-flip test over seeds cannot give p below 2 / 2**n (0.25 for 3
  seeds): it speaks to the spread over teachers and runs, and needs many seeds to be sharp;
- **per query**: each test query's AP under A minus under B (``queries.csv.gz`` beside each
  record), pooled over the seeds; a two-sided paired sign-flip permutation test of their mean
  (each query's difference keeps or flips its sign at random; ``draws`` draws, seeded) says
  whether the difference is larger than the queries' own noise, for these teachers.

Leaderboards are computed from records only; so is this.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Comparison:
    a: str
    b: str
    dataset: str
    seeds: list[int]
    per_seed: dict  # seed -> mAP@all of A minus B
    mean_delta: float  # mean over seeds of the per-seed difference
    seeds_favouring_a: int
    query_delta: float  # mean per-query AP difference over every (seed, query)
    queries: int  # (seed, query) pairs
    p_queries: float  # two-sided sign-flip permutation p of the per-query mean
    p_seeds: float  # two-sided exact sign-flip p over the per-seed differences
    other_teachers: tuple = ()  # seeds both rows completed on different teachers: left out

    def row(self) -> dict:
        from dfbench.app.text import md  # row names are text in a markdown cell

        left_out = f" (seed {', '.join(map(str, self.other_teachers))} left out: other teachers)" if self.other_teachers else ""
        return {
            "A": md(self.a), "B": md(self.b), "seeds": f"{len(self.seeds)}{left_out}", "Δ mAP@all (A − B)": f"{self.mean_delta:+.4f}",
            "per seed": " ".join(f"{self.per_seed[s]:+.4f}" for s in self.seeds),
            "seeds A > B": f"{self.seeds_favouring_a}/{len(self.seeds)}",
            "p (seeds)": f"{self.p_seeds:.3f}", "p (queries)": _p(self.p_queries), "queries": self.queries,
        }


def _p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def completed_by_seed(records: list[dict], dataset: str, label: str) -> dict:
    """{seed: record} of a row's completed records (its suite label, or method name)."""
    out = {}
    for r in records:
        row = (r.get("suite") or {}).get("label") or r["method"]
        if r["dataset"] == dataset and row == label and r.get("status") == "completed":
            out.setdefault(r["seed"], r)
    return out


def compare(records: list[dict], results: Path, dataset: str, a: str, b: str, draws: int = 20000, seed: int = 0) -> Comparison:
    """Row ``a`` against row ``b`` on ``dataset`` over the seeds both have completed."""
    import numpy as np

    from dfbench.app import queries as queries_file
    from dfbench.api.errors import ConfigError

    ra, rb = completed_by_seed(records, dataset, a), completed_by_seed(records, dataset, b)
    from dfbench.app.records import same_teachers

    both = sorted(set(ra) & set(rb))
    if not both:
        raise ConfigError(f"No seed on {dataset} has completed records of both '{a}' and '{b}': run them first (dfbench bench).")
    seeds = [s for s in both if same_teachers(ra[s], rb[s])]
    other = tuple(s for s in both if s not in seeds)
    if not seeds:
        raise ConfigError(
            f"'{a}' and '{b}' on {dataset} ran on different teachers on every seed both completed ({', '.join(map(str, other))}): "
            "they are not comparable. Run both with one teacher cache (a teacher trained again on another kind of CPU is another teacher)."
        )
    per_seed, diffs = {}, []
    for s in seeds:
        per_seed[s] = float(ra[s]["metrics"]["mAP@all"]) - float(rb[s]["metrics"]["mAP@all"])
        qa = queries_file.load(Path(results) / ra[s]["artifacts"] / queries_file.FILE)
        qb = queries_file.load(Path(results) / rb[s]["artifacts"] / queries_file.FILE)
        if [q["query"] for q in qa] != [q["query"] for q in qb]:
            raise ConfigError(f"'{a}' and '{b}' (seed {s}) were not evaluated on the same test queries: they are not comparable.")
        diffs += [x["AP"] - y["AP"] for x, y in zip(qa, qb)]
    d = np.asarray(diffs)
    rng = np.random.default_rng(seed)
    observed = abs(d.mean())
    hits = 0
    for start in range(0, draws, 1000):  # in chunks: memory stays small
        signs = rng.choice((-1.0, 1.0), size=(min(1000, draws - start), d.size))
        hits += int((np.abs((signs * d).mean(axis=1)) >= observed - 1e-15).sum())
    p_queries = (hits + 1) / (draws + 1)
    deltas = np.asarray([per_seed[s] for s in seeds])
    flips = np.array(np.meshgrid(*[(-1.0, 1.0)] * len(seeds))).reshape(len(seeds), -1).T
    p_seeds = float((np.abs((flips * deltas).mean(axis=1)) >= abs(deltas.mean()) - 1e-15).mean())
    return Comparison(a, b, dataset, seeds, per_seed, float(deltas.mean()), int((deltas > 0).sum()), float(d.mean()), int(d.size),
                      float(p_queries), p_seeds, other)


def markdown(comparisons: list[Comparison]) -> str:
    import pandas as pd

    if not comparisons:
        return "_no comparison: no row pair has completed seeds in common_"
    return pd.DataFrame([c.row() for c in comparisons]).to_markdown(index=False, disable_numparse=True)
