"""The regime check: do a suite's positive controls hold, so that its rows can tell methods apart?

A suite declares its controls (``controls:`` in its YAML): a baseline row and, for other rows, the
ordering a paper found between each and the baseline. DF-SBIR's Table 1 (Sketchy) has them for its
baselines: Uni-Modal Distillation reaches about 0.9 x Classifier Only or more; Averaging Weights,
Meta-Data and Alternative Data reach Classifier Only or more; Gaussian Prior stays below it. A
regime where such orderings fail (for example one where every data-free row falls far below the
teachers' own retrieval) cannot say whether a method fails or data-free distillation as a whole
fails there, so its leaderboard says so and no verdict on a method is drawn from it.

Each control is checked seed by seed on the seeds both rows completed (each seed its own split and
teachers with ``data.split_seed: run``): ``d_s = A_s - f * B_s`` in mAP@all, where A is the row, B
the baseline and f the factor. It **holds** when the mean of ``d_s`` is on the required side of 0
(``>= 0`` for ``at_least``, ``< 0`` for ``below``); the 95% interval of the mean (Student's t over
seeds, scipy.stats) says how sure that is. A suite's controls **pass** when each holds on at least
``min_seeds`` seeds; **fail** when one does not hold; are **incomplete** while a control has
fewer seeds. Computed from records only, like every leaderboard number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dfbench.api.errors import ConfigError

#: the relations a control may state between its row and the baseline
RELATIONS = ("at_least", "below")


@dataclass(frozen=True)
class Control:
    """One ordering: ``row`` at least (or below) ``factor`` x ``baseline`` in mAP@all."""

    row: str
    relation: str  # one of RELATIONS
    factor: float = 1.0

    def describe(self, baseline: str) -> str:
        times = "" if self.factor == 1.0 else f"{self.factor:g} x "
        return f"{self.row} {'≥' if self.relation == 'at_least' else '<'} {times}{baseline}"


@dataclass(frozen=True)
class Controls:
    """A suite's declared controls."""

    baseline: str
    checks: tuple[Control, ...]
    min_seeds: int = 5
    source: str = ""

    @classmethod
    def parse(cls, raw, where: str, labels: list[str]) -> "Controls | None":
        """The ``controls:`` mapping of a suite file (None when absent); ``labels``: the suite's row labels."""
        if raw is None:
            return None
        fix = ("Write controls: {baseline: ROW, rows: {ROW: {at_least: 0.9}, ROW: {below: 1.0}}, min_seeds: 5, source: TEXT}, "
               "each ROW a label of the suite's runs.")
        if not isinstance(raw, dict):
            raise ConfigError(f"'controls' in suite {where} must be a mapping. {fix}")
        unknown = sorted(set(raw) - {"baseline", "rows", "min_seeds", "source"})
        if unknown:
            raise ConfigError(f"Unknown key '{unknown[0]}' in 'controls' of suite {where}. {fix}")
        baseline, rows = raw.get("baseline"), raw.get("rows")
        if not isinstance(baseline, str) or not isinstance(rows, dict) or not rows:
            raise ConfigError(f"'controls' in suite {where} needs a baseline row and at least one row to check. {fix}")
        checks = []
        for row in (baseline, *rows):
            if row not in labels:
                raise ConfigError(f"'controls' in suite {where} names the row '{row}', which is not a label of the suite's runs "
                                  f"({', '.join(labels)}). {fix}")
        for row, rule in rows.items():
            if not isinstance(rule, dict) or len(rule) != 1 or next(iter(rule)) not in RELATIONS:
                raise ConfigError(f"The control of '{row}' in suite {where} must be one of {{at_least: F}} or {{below: F}}. {fix}")
            (relation, factor), = rule.items()
            if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor <= 0:
                raise ConfigError(f"The factor of the control of '{row}' in suite {where} must be a positive number, got {factor!r}.")
            checks.append(Control(row, relation, float(factor)))
        min_seeds = raw.get("min_seeds", 5)
        if not isinstance(min_seeds, int) or isinstance(min_seeds, bool) or min_seeds < 2:
            raise ConfigError(f"'min_seeds' in 'controls' of suite {where} must be an integer of at least 2, got {min_seeds!r}.")
        return cls(baseline, tuple(checks), min_seeds, str(raw.get("source") or ""))


@dataclass
class ControlResult:
    control: Control
    seeds: list[int] = field(default_factory=list)
    row_mean: float | None = None  # mAP@all of the row over the paired seeds
    baseline_mean: float | None = None
    margins: list[float] = field(default_factory=list)  # d_s per seed
    interval: tuple[float, float] | None = None  # 95% t interval of the mean margin
    status: str = "incomplete"  # holds, fails, incomplete

    @property
    def mean_margin(self) -> float | None:
        return sum(self.margins) / len(self.margins) if self.margins else None


@dataclass
class RegimeCheck:
    controls: Controls
    dataset: str
    results: list[ControlResult]

    @property
    def status(self) -> str:
        """pass, fail or incomplete (see the module's docstring)."""
        if any(r.status == "fails" for r in self.results):
            return "fail"
        if all(r.status == "holds" for r in self.results):
            return "pass"
        return "incomplete"


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """The two-sided Student's t interval of the mean of ``values`` (None for fewer than 2)."""
    import numpy as np
    from scipy import stats

    if len(values) < 2:
        return None
    x = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return float(x.mean() - half), float(x.mean() + half)


def check(records: list[dict], dataset: str, controls: Controls) -> RegimeCheck:
    """The regime check of ``controls`` on ``dataset`` from ``records`` (each with its suite label)."""
    from dfbench.app.compare import completed_by_seed
    from dfbench.app.records import same_teachers

    base = completed_by_seed(records, dataset, controls.baseline)
    out = []
    for control in controls.checks:
        rows = completed_by_seed(records, dataset, control.row)
        seeds = sorted(s for s in set(rows) & set(base) if same_teachers(rows[s], base[s]))
        a = [float(rows[s]["metrics"]["mAP@all"]) for s in seeds]
        b = [float(base[s]["metrics"]["mAP@all"]) for s in seeds]
        result = ControlResult(control, seeds)
        if seeds:
            result.row_mean, result.baseline_mean = sum(a) / len(a), sum(b) / len(b)
            result.margins = [x - control.factor * y for x, y in zip(a, b)]
            result.interval = t_interval(result.margins)
            held = result.mean_margin >= 0 if control.relation == "at_least" else result.mean_margin < 0
            if not held and len(seeds) >= 2:
                result.status = "fails"
            elif held and len(seeds) >= controls.min_seeds:
                result.status = "holds"
        out.append(result)
    return RegimeCheck(controls, dataset, out)


def markdown(regime: RegimeCheck) -> str:
    """The regime-check section of a suite's leaderboard page."""
    from dfbench.app.text import md

    c = regime.controls
    verdict = {
        "pass": "**Controls pass**: every ordering holds, so this regime can tell data-free methods apart and its rows may "
                "carry a verdict.",
        "fail": "**Controls fail**: at least one ordering the paper found between its baselines does not hold here, so this "
                "regime cannot tell whether a method fails or data-free distillation as a whole fails in it. **No verdict on "
                "a method is drawn from this page.**",
        "incomplete": f"**Controls incomplete**: not every control has its {c.min_seeds} seeds yet (or a shortfall is not "
                      "yet measured on 2 seeds); no verdict is drawn from this page until they do.",
    }[regime.status]
    lines = ["## Regime check", "",
             f"The positive controls of this suite{f' ({md(c.source)})' if c.source else ''}, checked on {md(regime.dataset)} seed by "
             f"seed: margin = row − factor × baseline (mAP@all), its mean and 95% t interval over the seeds both rows completed. "
             f"A control holds when the mean margin is on its side of 0 on at least {c.min_seeds} seeds "
             "(dfbench/app/controls.py).", "", verdict, "",
             "| control | seeds | row | baseline | mean margin | 95% interval | status |",
             "|---|---|---|---|---|---|---|"]
    for r in regime.results:
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        interval = "-" if r.interval is None else f"[{r.interval[0]:+.4f}, {r.interval[1]:+.4f}]"
        margin = "-" if r.mean_margin is None else f"{r.mean_margin:+.4f}"
        lines.append(f"| {md(r.control.describe(c.baseline))} | {len(r.seeds)} | {fmt(r.row_mean)} | {fmt(r.baseline_mean)} | "
                     f"{margin} | {interval} | {r.status} |")
    return "\n".join(lines) + "\n"
